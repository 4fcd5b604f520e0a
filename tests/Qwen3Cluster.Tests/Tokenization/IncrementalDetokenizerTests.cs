using Qwen3Cluster.Model.Tokenization;
using static Qwen3Cluster.Tests.Tokenization.TokenizerTestData;

namespace Qwen3Cluster.Tests.Tokenization;

public sealed class IncrementalDetokenizerTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DeltasConcatenateToDecodeForEveryFixture(bool skipSpecialTokens)
    {
        var failures = new List<string>();
        var cases = EncodeCases.Select(c => (c.Name, c.Ids))
            .Concat(DecodeCases.Select(c => (c.Name, c.Ids)))
            .Concat(ChatCases.Select(c => (c.GetProperty("name").GetString()!, Ints(c.GetProperty("ids")))))
            .ToList();
        foreach ((string name, int[] ids) in cases)
        {
            string streamed = Stream(ids, skipSpecialTokens, out _);
            string decoded = Tokenizer.Decode(ids, skipSpecialTokens);
            if (streamed != decoded)
            {
                failures.Add($"{name}: streamed {Show(streamed)}, decoded {Show(decoded)}");
            }
        }

        AssertNoFailures(failures, cases.Count, EncodeCaseCount + DecodeCaseCount + ChatCaseCount);
    }

    [Fact]
    public void DeltasNeverSplitAUtf8Character()
    {
        int checkedCases = 0;
        foreach (EncodeCase c in EncodeCases.Where(c => !c.Decoded.Contains('\uFFFD')))
        {
            checkedCases++;
            Stream(c.Ids, skipSpecialTokens: false, out List<string> deltas);
            foreach (string delta in deltas)
            {
                Assert.DoesNotContain('\uFFFD', delta);
                if (delta.Length > 0)
                {
                    Assert.False(char.IsLowSurrogate(delta[0]), $"{c.Name}: delta starts inside a surrogate pair");
                    Assert.False(char.IsHighSurrogate(delta[^1]), $"{c.Name}: delta ends inside a surrogate pair");
                }
            }
        }

        Assert.True(checkedCases > 40);
    }

    [Fact]
    public void BytesOfAnUnfinishedCharacterAreHeldUntilItCompletes()
    {
        // 𠀀 (F0 A0 80 80) is spelled by the tokens 172 (F0), 63219 (A0 80) and 222 (80).
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();
        Assert.Equal("", detokenizer.Push(172));
        Assert.Equal(1, detokenizer.PendingByteCount);
        Assert.Equal("", detokenizer.Push(63219));
        Assert.Equal(3, detokenizer.PendingByteCount);
        Assert.Equal("𠀀", detokenizer.Push(222));
        Assert.Equal(0, detokenizer.PendingByteCount);
        Assert.Equal("", detokenizer.Flush());
    }

    [Fact]
    public void FlushTurnsAnUnfinishedCharacterIntoAReplacementCharacter()
    {
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();
        Assert.Equal("hi", detokenizer.Push(6023));
        Assert.Equal("", detokenizer.Push(172));
        Assert.Equal("\uFFFD", detokenizer.Flush());
        Assert.Equal("", detokenizer.Flush());
        Assert.Equal("hi", detokenizer.Push(6023));
    }

    [Fact]
    public void BytesThatCanNeverFormACharacterAreNotHeldBack()
    {
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();
        Assert.Equal("\uFFFD\uFFFD", detokenizer.Push(63219)); // two stray continuation bytes
        Assert.Equal(0, detokenizer.PendingByteCount);
        Assert.Equal("", detokenizer.Push(172));
        Assert.Equal("\uFFFDhi", detokenizer.Push(6023)); // F0 followed by ASCII is already broken
    }

    [Fact]
    public void SpecialTokensAreSkippedOnlyWhenAsked()
    {
        int[] ids = Tokenizer.Encode("<|im_start|>assistant\n<think>ok</think><|im_end|>");
        Assert.Equal("<|im_start|>assistant\n<think>ok</think><|im_end|>", Stream(ids, skipSpecialTokens: false, out _));
        Assert.Equal("assistant\n<think>ok</think>", Stream(ids, skipSpecialTokens: true, out _));
    }

    [Fact]
    public void IdsOutsideTheVocabularyProduceNoText()
    {
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();
        Assert.Equal("", detokenizer.Push(151900));
        Assert.Equal("", detokenizer.Push(-1));
        Assert.Equal("hi", detokenizer.Push(6023));
    }

    [Fact]
    public void RandomByteTokenStreamsMatchDecode()
    {
        // Single-byte tokens in random order hit every kind of truncated, overlong and stray sequence.
        int[] byteTokens = Enumerable.Range(0, 256)
            .Select(b => Tokenizer.TokenToId(ByteLevelAlphabet.ToChar((byte)b).ToString())!.Value)
            .ToArray();
        int[] pool = [.. byteTokens, 6023, 63219, 151644, 151667];
        var random = new Random(20250601);
        for (int round = 0; round < 2000; round++)
        {
            int[] ids = Enumerable.Range(0, random.Next(1, 12)).Select(_ => pool[random.Next(pool.Length)]).ToArray();
            Assert.Equal(Tokenizer.Decode(ids), Stream(ids, skipSpecialTokens: false, out _));
        }
    }

    [Theory]
    [InlineData(new byte[] { 0x41 }, 0)]
    [InlineData(new byte[] { 0xC3 }, 1)]
    [InlineData(new byte[] { 0x41, 0xE4, 0xBD }, 2)]
    [InlineData(new byte[] { 0xE4, 0xBD, 0xA0 }, 0)]
    [InlineData(new byte[] { 0xF0, 0x9F, 0x98 }, 3)]
    [InlineData(new byte[] { 0xF0, 0x9F, 0x98, 0x80 }, 0)]
    [InlineData(new byte[] { 0xE0, 0x80 }, 0)]
    [InlineData(new byte[] { 0xED, 0xA0 }, 0)]
    [InlineData(new byte[] { 0xF4, 0x90 }, 0)]
    [InlineData(new byte[] { 0xF5 }, 0)]
    [InlineData(new byte[] { 0xC0 }, 0)]
    [InlineData(new byte[] { 0x80, 0x80, 0x80 }, 0)]
    [InlineData(new byte[] { 0xC3, 0xA9, 0xA9 }, 0)]
    public void OnlyAValidButUnfinishedSequenceIsHeld(byte[] bytes, int held)
    {
        Assert.Equal(held, IncrementalDetokenizer.IncompleteTailLength(bytes));
    }

    static string Stream(int[] ids, bool skipSpecialTokens, out List<string> deltas)
    {
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer(skipSpecialTokens);
        deltas = ids.Select(detokenizer.Push).ToList();
        deltas.Add(detokenizer.Flush());
        return string.Concat(deltas);
    }
}
