namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// The decimal spellings (no leading zeros, at most 16 digits) of the integers in [lo, hi], either end open, as a
/// grammar: the classic range-to-regex split, digit by digit, per number of digits.
/// </summary>
public static class IntegerRange
{
    const int MaxDigits = 16;

    public static Grammar Of(long? lo, long? hi)
    {
        var choices = new List<Grammar>();
        if (hi is null || hi >= 0) choices.Add(Naturals(Math.Max(lo ?? 0, 0), hi));
        if (lo is null || lo < 0)
        {
            long nearest = hi is { } h && h < 0 ? -h : 1;
            choices.Add(Grammar.Seq(Grammar.Text("-"), Naturals(nearest, lo is { } l ? -l : null)));
        }
        return Grammar.Alt(choices);
    }

    /// <summary>Naturals in [a, b] (b null: up to 16 digits).</summary>
    static Grammar Naturals(long a, long? b)
    {
        var choices = new List<Grammar>();
        int from = Digits(a), to = b is { } bb ? Digits(bb) : MaxDigits;
        for (int length = from; length <= to; length++)
        {
            long low = Math.Max(a, length == 1 ? 0 : Pow10(length - 1));
            long high = length == MaxDigits ? long.MaxValue : Pow10(length) - 1;
            if (b is { } limit) high = Math.Min(high, limit);
            if (low > high) continue;
            string lowText = low.ToString(), highText = length == MaxDigits && b is null ? new string('9', MaxDigits) : high.ToString();
            choices.Add(SameLength(lowText.PadLeft(length, '0'), highText));
        }
        return Grammar.Alt(choices);
    }

    static int Digits(long n) => n < 10 ? 1 : 1 + Digits(n / 10);

    static long Pow10(int n) => n == 0 ? 1 : 10 * Pow10(n - 1);

    static Grammar Digit(char lo, char hi) => Grammar.Byte((byte)lo, (byte)hi);

    /// <summary>Digit strings of one length between <paramref name="lo"/> and <paramref name="hi"/> inclusive.</summary>
    static Grammar SameLength(string lo, string hi)
    {
        if (lo.Length == 0) return Grammar.Empty;
        if (lo[0] == hi[0]) return Grammar.Seq(Digit(lo[0], lo[0]), SameLength(lo[1..], hi[1..]));
        int rest = lo.Length - 1;
        if (lo[1..].All(c => c == '0') && hi[1..].All(c => c == '9'))
            return Grammar.Seq(Digit(lo[0], hi[0]), Grammar.Repeat(Digit('0', '9'), rest, rest));
        var choices = new List<Grammar>
        {
            Grammar.Seq(Digit(lo[0], lo[0]), SameLength(lo[1..], new string('9', rest))),
        };
        if (hi[0] - lo[0] > 1) choices.Add(Grammar.Seq(Digit((char)(lo[0] + 1), (char)(hi[0] - 1)), Grammar.Repeat(Digit('0', '9'), rest, rest)));
        choices.Add(Grammar.Seq(Digit(hi[0], hi[0]), SameLength(new string('0', rest), hi[1..])));
        return Grammar.Alt(choices);
    }
}
