using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// The <c>Split</c> pre-tokenizer (behavior <c>Isolated</c>): regex matches and the gaps between them become
/// pieces. .NET regexes walk UTF-16 units, so <c>\p{L}</c> never matches a letter outside the BMP (CJK
/// Extension B, math alphanumerics) and a class like <c>[^\p{L}]?</c> can take half of a surrogate pair.
/// HF tokenizers matches by code point, so astral code points are run through the regex as one BMP
/// stand-in character of the same general category and the match offsets are mapped back.
/// </summary>
sealed class CodePointRegexPreTokenizer : PreTokenizer
{
    readonly Regex _regex;

    public CodePointRegexPreTokenizer(string pattern)
    {
        _regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text ?? string.Empty);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text.ToString());

    public List<(int Offset, int Length)> Split(string text)
    {
        if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0) return Isolate(text, text.Length, offsets: null);

        var standIns = new StringBuilder(text.Length);
        var offsets = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune rune, out int consumed);
            offsets.Add(i);
            standIns.Append(rune.IsBmp ? (char)rune.Value : StandIn(Rune.GetUnicodeCategory(rune)));
            i += consumed;
        }

        offsets.Add(text.Length);
        return Isolate(standIns.ToString(), text.Length, offsets);
    }

    List<(int Offset, int Length)> Isolate(string input, int originalLength, List<int>? offsets)
    {
        var pieces = new List<(int Offset, int Length)>();
        int Map(int index) => offsets is null ? index : offsets[index];
        int previous = 0;
        for (Match m = _regex.Match(input); m.Success; m = m.NextMatch())
        {
            if (m.Length == 0) continue;

            int start = Map(m.Index);
            int end = Map(m.Index + m.Length);
            if (start > previous) pieces.Add((previous, start - previous));

            pieces.Add((start, end - start));
            previous = end;
        }

        if (previous < originalLength) pieces.Add((previous, originalLength - previous));

        return pieces;
    }

    /// <summary>A BMP character of the given category that no pre-tokenizer pattern spells out literally.</summary>
    internal static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0531',
        UnicodeCategory.LowercaseLetter => '\u0561',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u05D0',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.SpaceSeparator => '\u2000',
        UnicodeCategory.LineSeparator => '\u2028',
        UnicodeCategory.ParagraphSeparator => '\u2029',
        UnicodeCategory.Control => '\u0080',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u2039',
        UnicodeCategory.FinalQuotePunctuation => '\u203A',
        UnicodeCategory.OtherPunctuation => '\u00B6',
        UnicodeCategory.MathSymbol => '\u00B1',
        UnicodeCategory.CurrencySymbol => '\u00A2',
        UnicodeCategory.ModifierSymbol => '\u02C2',
        UnicodeCategory.OtherSymbol => '\u00A9',
        _ => '\u0378',
    };
}
