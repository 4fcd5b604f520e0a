namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// A set of Unicode scalar values as sorted, disjoint ranges, and the UTF-8 byte sequences that spell exactly its
/// members (surrogates are never members: they have no UTF-8 form). Classes of regexes and JSON strings are these.
/// </summary>
public sealed class CodePointSet
{
    public const int MaxCodePoint = 0x10FFFF;
    readonly List<(int Lo, int Hi)> _ranges;

    CodePointSet(List<(int Lo, int Hi)> ranges) => _ranges = ranges;

    public IReadOnlyList<(int Lo, int Hi)> Ranges => _ranges;

    public static CodePointSet Of(params IEnumerable<(int Lo, int Hi)> ranges)
    {
        var sorted = ranges.Where(r => r.Lo <= r.Hi).OrderBy(r => r.Lo).ToList();
        var merged = new List<(int Lo, int Hi)>();
        foreach (var r in sorted)
        {
            if (merged.Count > 0 && r.Lo <= merged[^1].Hi + 1) merged[^1] = (merged[^1].Lo, Math.Max(merged[^1].Hi, r.Hi));
            else merged.Add(r);
        }
        return new CodePointSet(merged);
    }

    public static CodePointSet Single(int c) => Of((c, c));

    public static readonly CodePointSet Any = Of((0, MaxCodePoint));

    public CodePointSet Union(CodePointSet other) => Of(_ranges.Concat(other._ranges));

    public CodePointSet Complement()
    {
        var result = new List<(int, int)>();
        int next = 0;
        foreach (var (lo, hi) in _ranges)
        {
            if (lo > next) result.Add((next, lo - 1));
            next = hi + 1;
        }
        if (next <= MaxCodePoint) result.Add((next, MaxCodePoint));
        return new CodePointSet(result);
    }

    public CodePointSet Minus(CodePointSet other) => Complement().Union(other).Complement();

    /// <summary>The UTF-8 spellings of the set's members.</summary>
    public Grammar ToGrammar()
    {
        var choices = new List<Grammar>();
        foreach (var (lo, hi) in _ranges)
        {
            // Surrogates are not scalar values.
            if (lo < 0xD800) AddRange(lo, Math.Min(hi, 0xD7FF), choices);
            if (hi > 0xDFFF) AddRange(Math.Max(lo, 0xE000), hi, choices);
        }
        return Grammar.Alt(choices);
    }

    /// <summary>Splits [s, e] until each piece is one byte range per position of one encoded length (as RE2 and utf8-ranges do).</summary>
    static void AddRange(int s, int e, List<Grammar> choices)
    {
        if (s > e) return;
        foreach (int limit in (ReadOnlySpan<int>)[0x7F, 0x7FF, 0xFFFF])
        {
            if (s <= limit && e > limit)
            {
                AddRange(s, limit, choices);
                AddRange(limit + 1, e, choices);
                return;
            }
        }
        int n = Length(s);
        if (n == 1)
        {
            choices.Add(Grammar.Byte((byte)s, (byte)e));
            return;
        }
        for (int i = 1; i < n; i++)
        {
            int m = (1 << (6 * i)) - 1;
            if ((s & ~m) == (e & ~m)) continue;
            if ((s & m) != 0)
            {
                AddRange(s, s | m, choices);
                AddRange((s | m) + 1, e, choices);
                return;
            }
            if ((e & m) != m)
            {
                AddRange(s, (e & ~m) - 1, choices);
                AddRange(e & ~m, e, choices);
                return;
            }
        }
        Span<byte> a = stackalloc byte[4], b = stackalloc byte[4];
        Encode(s, a);
        Encode(e, b);
        var parts = new Grammar[n];
        for (int k = 0; k < n; k++) parts[k] = Grammar.Byte(a[k], b[k]);
        choices.Add(Grammar.Seq(parts));
    }

    static int Length(int c) => c <= 0x7F ? 1 : c <= 0x7FF ? 2 : c <= 0xFFFF ? 3 : 4;

    static void Encode(int c, Span<byte> to)
    {
        switch (Length(c))
        {
            case 1:
                to[0] = (byte)c;
                break;
            case 2:
                to[0] = (byte)(0xC0 | (c >> 6));
                to[1] = (byte)(0x80 | (c & 0x3F));
                break;
            case 3:
                to[0] = (byte)(0xE0 | (c >> 12));
                to[1] = (byte)(0x80 | ((c >> 6) & 0x3F));
                to[2] = (byte)(0x80 | (c & 0x3F));
                break;
            default:
                to[0] = (byte)(0xF0 | (c >> 18));
                to[1] = (byte)(0x80 | ((c >> 12) & 0x3F));
                to[2] = (byte)(0x80 | ((c >> 6) & 0x3F));
                to[3] = (byte)(0x80 | (c & 0x3F));
                break;
        }
    }
}
