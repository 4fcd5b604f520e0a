using System.Text;
using Qwen3Cluster.Model.Constraints;

namespace Qwen3Cluster.Tests.Constraints;

/// <summary>Regexes, character classes and integer ranges compiled to byte automata accept exactly what they should.</summary>
public sealed class GrammarTests
{
    static bool Matches(Grammar grammar, string text) => Matches(new ByteDfa(Nfa.Build(grammar)), text);

    static bool Matches(ByteDfa dfa, string text)
    {
        int state = dfa.Walk(dfa.Start, Encoding.UTF8.GetBytes(text));
        return state != ByteDfa.Dead && dfa.IsAccepting(state);
    }

    [Theory]
    [InlineData(@"ab|cd", "ab", true)]
    [InlineData(@"ab|cd", "cd", true)]
    [InlineData(@"ab|cd", "abcd", false)]
    [InlineData(@"^a+b*$", "aaab", true)]
    [InlineData(@"a+b*", "b", false)]
    [InlineData(@"(ab){2,3}", "ababab", true)]
    [InlineData(@"(ab){2,3}", "ab", false)]
    [InlineData(@"(?:x|y){2}z?", "xyz", true)]
    [InlineData(@"\d{3}-\d{4}", "555-1234", true)]
    [InlineData(@"\d{3}-\d{4}", "555-12345", false)]
    [InlineData(@"[A-Z][a-z]*", "Zürich", false)]
    [InlineData(@"[A-Z]\w*", "Zurich_2", true)]
    [InlineData(@"[^a-c]+", "xyzé漢", true)]
    [InlineData(@"[^a-c]+", "xbz", false)]
    [InlineData(@".+", "line\nbreak", false)]
    [InlineData(@"\s*\S+", "  word", true)]
    [InlineData(@"(positive|negative|neutral)", "neutral", true)]
    [InlineData(@"a{,2}", "aa", true)]
    [InlineData(@"a{x}", "a{x}", true)]
    [InlineData(@"\u00e9\x41", "éA", true)]
    [InlineData(@"[\u4e00-\u9fff]{2}", "漢字", true)]
    [InlineData(@"😀+", "😀😀", true)]
    [InlineData(@"a.*?b", "axxb", true)]
    [InlineData(@"(?<year>\d{4})", "2026", true)]
    public void ARegexMatchesWholeStrings(string pattern, string text, bool expected) =>
        Assert.Equal(expected, Matches(RegexParser.Parse(pattern), text));

    [Theory]
    [InlineData(@"(a)\1", @"\1")]
    [InlineData(@"a(?=b)", "lookaround")]
    [InlineData(@"a\bb", @"\b")]
    [InlineData(@"(ab", "missing ')'")]
    [InlineData(@"[ab", "missing ']'")]
    [InlineData(@"*a", "nothing to repeat")]
    [InlineData(@"a{2000}", "above 1000")]
    [InlineData(@"[z-a]", "backwards")]
    public void AnUnsupportedOrBrokenRegexIsRefusedSayingWhy(string pattern, string because)
    {
        var error = Assert.Throws<GrammarException>(() => RegexParser.Parse(pattern));
        Assert.Contains(because, error.Message);
    }

    [Fact]
    public void ACodePointSetSpellsExactlyItsMembersInUtf8()
    {
        var set = CodePointSet.Of((0x41, 0x5A), (0xE9, 0xE9), (0x7F0, 0x801), (0xFFF0, 0x10010), (0x10FFF0, 0x10FFFF)).Complement()
            .Union(CodePointSet.Of(('B', 'B')));
        var dfa = new ByteDfa(Nfa.Build(set.ToGrammar()));
        int[] probes = [0, 0x40, 0x41, 0x42, 0x43, 0x5A, 0x5B, 0x7F, 0x80, 0xE8, 0xE9, 0xEA, 0x7EF, 0x7F0, 0x800, 0x801, 0x802, 0xD7FF,
            0xE000, 0xFFEF, 0xFFF0, 0xFFFF, 0x10000, 0x10010, 0x10011, 0x10FFEF, 0x10FFF0, 0x10FFFF];
        var random = new Random(5);
        foreach (int c in probes.Concat(Enumerable.Range(0, 2000).Select(_ => random.Next(0, 0x110000))))
        {
            if (c is >= 0xD800 and <= 0xDFFF) continue;
            bool member = set.Ranges.Any(r => c >= r.Lo && c <= r.Hi);
            Assert.True(member == Matches(dfa, char.ConvertFromUtf32(c)), $"U+{c:X4}: member {member}");
        }
        // A lone continuation byte or a surrogate's encoding is never text.
        Assert.Equal(ByteDfa.Dead, dfa.Walk(dfa.Start, [0x80]));
        Assert.Equal(ByteDfa.Dead, dfa.Walk(dfa.Start, [0xED, 0xA0, 0x80]));
    }

    [Theory]
    [InlineData(0L, 100L)]
    [InlineData(1L, null)]
    [InlineData(-15L, 7L)]
    [InlineData(null, -3L)]
    [InlineData(17L, 1005L)]
    [InlineData(-999L, -100L)]
    [InlineData(5L, 5L)]
    public void AnIntegerRangeSpellsExactlyItsMembers(long? lo, long? hi)
    {
        var dfa = new ByteDfa(Nfa.Build(IntegerRange.Of(lo, hi)));
        for (long n = -1200; n <= 1200; n++)
        {
            bool member = (lo is null || n >= lo) && (hi is null || n <= hi);
            Assert.True(member == Matches(dfa, n.ToString()), $"{n} in [{lo}, {hi}]: {member}");
        }
        Assert.False(Matches(dfa, "-0"));
        Assert.False(Matches(dfa, "007"));
        Assert.Equal(hi is null, Matches(dfa, "1234567890123456"));
    }

    [Fact]
    public void TheDistanceToAMatchIsTheShortestCompletion()
    {
        var dfa = new ByteDfa(Nfa.Build(RegexParser.Parse("(abc|de)f+")));
        Assert.Equal(3, dfa.Distance(dfa.Start));
        int afterA = dfa.Walk(dfa.Start, "a"u8);
        Assert.Equal(3, dfa.Distance(afterA));
        int done = dfa.Walk(dfa.Start, "def"u8);
        Assert.Equal(0, dfa.Distance(done));
        Assert.True(dfa.IsAccepting(done));
        Assert.False(dfa.IsComplete(done));
        var choice = new ByteDfa(Nfa.Build(RegexParser.Parse("yes|no")));
        Assert.True(choice.IsComplete(choice.Walk(choice.Start, "no"u8)));
    }
}
