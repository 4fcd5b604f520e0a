using System.Text.RegularExpressions;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>A slice of the input: plain text (<see cref="TokenId"/> is -1) or one matched added token.</summary>
readonly record struct TextSegment(int Start, int Length, int TokenId)
{
    public bool IsText => TokenId < 0;
}

/// <summary>
/// Cuts added tokens out of text before any BPE happens, as HF tokenizers does: leftmost match wins and,
/// among matches starting at the same place, the longest one.
/// </summary>
sealed class AddedTokenSplitter
{
    readonly Regex? _regex;
    readonly Dictionary<string, AddedToken> _byContent;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _byContent = tokens.ToDictionary(t => t.Content, StringComparer.Ordinal);
        if (_byContent.Count == 0) return;

        // Regex alternation is ordered, so listing longer tokens first yields leftmost-longest matching.
        IEnumerable<string> alternatives = _byContent.Keys
            .OrderByDescending(c => c.Length)
            .ThenBy(c => c, StringComparer.Ordinal)
            .Select(Regex.Escape);
        _regex = new Regex(string.Join('|', alternatives), RegexOptions.CultureInvariant | RegexOptions.Compiled);
    }

    public List<TextSegment> Split(string text, int start, int length)
    {
        var segments = new List<TextSegment>();
        int end = start + length;
        int cursor = start;
        while (_regex is not null && cursor < end)
        {
            Match m = _regex.Match(text, cursor, end - cursor);
            if (!m.Success) break;

            AddedToken token = _byContent[m.Value];
            int from = m.Index;
            int to = m.Index + m.Length;
            while (token.LStrip && from > cursor && char.IsWhiteSpace(text[from - 1])) from--;

            while (token.RStrip && to < end && char.IsWhiteSpace(text[to])) to++;

            if (from > cursor) segments.Add(new TextSegment(cursor, from - cursor, -1));

            segments.Add(new TextSegment(from, to - from, token.Id));
            cursor = to;
        }

        if (cursor < end) segments.Add(new TextSegment(cursor, end - cursor, -1));

        return segments;
    }
}
