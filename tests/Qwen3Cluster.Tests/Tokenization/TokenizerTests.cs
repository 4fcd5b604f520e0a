using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Qwen3Cluster.Model.Tokenization;
using static Qwen3Cluster.Tests.Tokenization.TokenizerTestData;

namespace Qwen3Cluster.Tests.Tokenization;

public sealed class TokenizerTests
{
    [Fact]
    public void EncodeMatchesReferenceIdsForEveryFixtureString()
    {
        var failures = new List<string>();
        var cases = EncodeCases.ToList();
        foreach (EncodeCase c in cases)
        {
            int[] actual = Tokenizer.Encode(c.Text);
            if (!actual.SequenceEqual(c.Ids))
            {
                failures.Add($"{c.Name}: {Show(c.Text)}\n  expected {Show(c.Ids)}\n  actual   {Show(actual)}");
            }
        }

        AssertNoFailures(failures, cases.Count, EncodeCaseCount);
    }

    [Fact]
    public void DecodeMatchesReferenceForEveryFixtureString()
    {
        var failures = new List<string>();
        var cases = EncodeCases.ToList();
        foreach (EncodeCase c in cases)
        {
            string decoded = Tokenizer.Decode(c.Ids);
            string skipped = Tokenizer.Decode(c.Ids, skipSpecialTokens: true);
            if (decoded != c.Decoded || skipped != c.DecodedSkipSpecial)
            {
                failures.Add($"{c.Name}: got {Show(decoded)} / {Show(skipped)}, expected {Show(c.Decoded)} / {Show(c.DecodedSkipSpecial)}");
            }
        }

        AssertNoFailures(failures, cases.Count, EncodeCaseCount);
    }

    [Fact]
    public void DecodeRoundTripsEveryFixtureString()
    {
        var failures = new List<string>();
        var cases = EncodeCases.ToList();
        foreach (EncodeCase c in cases)
        {
            // Decoding gives back the NFC text; only normalization across an added-token boundary differs.
            string roundTripped = Tokenizer.Decode(Tokenizer.Encode(c.Text));
            bool nfcExpected = c.Name != "special-then-combining-mark";
            if (roundTripped != c.Decoded || (nfcExpected && roundTripped != c.Text.Normalize(NormalizationForm.FormC)))
            {
                failures.Add($"{c.Name}: {Show(c.Text)} came back as {Show(roundTripped)}");
            }
        }

        AssertNoFailures(failures, cases.Count, EncodeCaseCount);
    }

    [Fact]
    public void DecodeReplacesInvalidUtf8LikeTheReference()
    {
        var failures = new List<string>();
        var cases = DecodeCases.ToList();
        foreach (DecodeCase c in cases)
        {
            string actual = Tokenizer.Decode(c.Ids);
            if (actual != c.Text)
            {
                failures.Add($"{c.Name}: expected {Show(c.Text)}, got {Show(actual)}");
            }
        }

        AssertNoFailures(failures, cases.Count, DecodeCaseCount);
        Assert.Equal("\uFFFD", Tokenizer.Decode([172]));
    }

    [Fact]
    public void FixturesWereRecordedFromTheCachedTokenizerFiles()
    {
        foreach ((string file, string field) in new[] { ("tokenizer.json", "tokenizerJsonSha256"), ("tokenizer_config.json", "tokenizerConfigSha256") })
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(ModelDir, file));
            Assert.Equal(FixtureHeader.GetProperty(field).GetString(), Convert.ToHexStringLower(SHA256.HashData(bytes)));
        }
    }

    [Fact]
    public void EncodeAppliesNfcBeforeBpe()
    {
        Assert.Equal(Tokenizer.Encode("\u00e9cole"), Tokenizer.Encode("e\u0301cole"));
        Assert.Equal(Tokenizer.Encode("\uAC01"), Tokenizer.Encode("\u1100\u1161\u11A8"));
    }

    [Fact]
    public void AddedTokensAreSplitOutOfTheRawTextBeforeNormalization()
    {
        // NFC would compose '>' + U+0338 into U+226F and destroy the token if it ran first.
        int[] ids = Tokenizer.Encode("<|im_end|>\u0338");
        Assert.Equal(151645, ids[0]);
        Assert.Equal(Tokenizer.Encode("\u0338"), ids[1..]);
        Assert.Equal([151644, 872, 198, 6023, 151645], Tokenizer.Encode("<|im_start|>user\nhi<|im_end|>"));
    }

    [Theory]
    [InlineData("<|im_start")]
    [InlineData("<|im_end|")]
    [InlineData("<|IM_START|>")]
    [InlineData("<think")]
    public void PartialOrMiscasedAddedTokensAreEncodedAsText(string text)
    {
        int[] ids = Tokenizer.Encode(text);
        Assert.All(ids, id => Assert.True(id < 151643, $"id {id} is an added token"));
        Assert.Equal(text, Tokenizer.Decode(ids));
    }

    [Fact]
    public void EmptyStringEncodesToNoIdsAndDecodesBack()
    {
        Assert.Empty(Tokenizer.Encode(""));
        Assert.Equal("", Tokenizer.Decode([]));
    }

    [Fact]
    public void LoneSurrogatesAreEncodedAsReplacementCharacters()
    {
        Assert.Equal(Tokenizer.Encode("a\uFFFDb\uFFFD"), Tokenizer.Encode("a\uD800b\uDC00"));
        Assert.Equal(Tokenizer.Encode("\uFFFD\U0001F600"), Tokenizer.Encode("\uDC00\U0001F600"));
    }

    [Fact]
    public void VocabularyFactsComeFromTheTokenizerFiles()
    {
        Assert.Equal(151669, Tokenizer.VocabSize);
        Assert.Equal(26, Tokenizer.AddedTokens.Count);
        Assert.Equal(151645, Tokenizer.EosTokenId);
        Assert.Equal([151645], Tokenizer.EosTokenIds);
        Assert.Equal(151643, Tokenizer.PadTokenId);
        Assert.Null(Tokenizer.BosTokenId);
        Assert.Equal(151644, Tokenizer.TokenToId("<|im_start|>"));
        Assert.Equal(151667, Tokenizer.TokenToId("<think>"));
        Assert.Equal(9707, Tokenizer.TokenToId("Hello"));
        Assert.Equal(1879, Tokenizer.TokenToId("\u0120world"));
        Assert.Null(Tokenizer.TokenToId("definitely not a token"));
        Assert.Equal("<|im_end|>", Tokenizer.IdToToken(151645));
        Assert.Equal("\u0120world", Tokenizer.IdToToken(1879));
        Assert.Null(Tokenizer.IdToToken(151669));
        Assert.Null(Tokenizer.IdToToken(-1));
        Assert.True(Tokenizer.IsSpecial(151643));
        Assert.True(Tokenizer.IsSpecial(151644));
        Assert.False(Tokenizer.IsSpecial(151657)); // <tool_call> is an added token but not special
        Assert.False(Tokenizer.IsSpecial(151667)); // <think>
        Assert.False(Tokenizer.IsSpecial(9707));
        Assert.True(ChatTemplate.IsSupported(Tokenizer.ChatTemplateSource));
    }

    [Fact]
    public void SkipSpecialTokensKeepsNonSpecialAddedTokens()
    {
        int[] ids = Tokenizer.Encode("<|im_start|>assistant\n<think>\nx\n</think>\n\n<tool_call>y</tool_call><|im_end|><|endoftext|>");
        Assert.Equal("assistant\n<think>\nx\n</think>\n\n<tool_call>y</tool_call>", Tokenizer.Decode(ids, skipSpecialTokens: true));
    }

    [Fact]
    public void IdsPastTheVocabularyDecodeToNothing()
    {
        // Qwen3's embedding has 151936 rows, more than the tokenizer's 151669 ids; HF skips the extra ids.
        Assert.Equal("hi", Tokenizer.Decode([151669, 6023, 151935, -5]));
        Assert.True(Tokenizer.GetTokenBytes(151935).IsEmpty);
    }

    [Fact]
    public void EncodeGivesTheSameIdsFromManyThreads()
    {
        string[] texts = EncodeCases.Select(c => c.Text).ToArray();
        int[][] expected = texts.Select(Tokenizer.Encode).ToArray();
        Parallel.For(0, texts.Length * 8, i =>
        {
            int k = i % texts.Length;
            Assert.Equal(expected[k], Tokenizer.Encode(texts[k]));
        });
    }

    [Fact]
    public void AstralStandInsHaveTheSameCategoryAsTheCodePointsTheyReplace()
    {
        var whitespace = new Regex(@"\s");
        foreach (UnicodeCategory category in Enum.GetValues<UnicodeCategory>().Where(c => c != UnicodeCategory.Surrogate))
        {
            char standIn = CodePointRegexPreTokenizer.StandIn(category);
            Assert.Equal(category, char.GetUnicodeCategory(standIn));
            bool isSeparator = category is UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;
            Assert.Equal(isSeparator, whitespace.IsMatch(standIn.ToString()));
        }
    }

    [Fact]
    public void SplitPatternMatchesAstralLettersAndDigitsByCodePoint()
    {
        var splitter = new CodePointRegexPreTokenizer(MiniTokenizerFiles.QwenSplitPattern);
        string text = "𠀀𠀁 abc 𝟎𝟏😀abc";
        string[] pieces = splitter.Split(text).Select(p => text.Substring(p.Offset, p.Length)).ToArray();
        Assert.Equal(["𠀀𠀁", " abc", " ", "𝟎", "𝟏", "😀abc"], pieces);
    }

    [Fact]
    public void SplitPatternUsesUnicodeWhiteSpaceLikeHfTokenizers()
    {
        // HF's regex engine counts NEL (U+0085) as \s and BOM (U+FEFF) as not; JavaScript's \s does the opposite,
        // so these two are the places where the node reference tokenizer splits differently from HF.
        var splitter = new CodePointRegexPreTokenizer(MiniTokenizerFiles.QwenSplitPattern);
        string Pieces(string text) => string.Join("|", splitter.Split(text).Select(p => text.Substring(p.Offset, p.Length)));
        Assert.Equal("x|\u0085|'t", Pieces("x\u0085't"));
        Assert.Equal("x|\uFEFF| y", Pieces("x\uFEFF y"));
    }

    [Fact]
    public void ByteLevelAlphabetCoversEveryByteOnce()
    {
        var chars = Enumerable.Range(0, 256).Select(b => ByteLevelAlphabet.ToChar((byte)b)).ToArray();
        Assert.Equal(256, chars.Distinct().Count());
        Assert.Equal('\u0120', ByteLevelAlphabet.ToChar((byte)' '));
        Assert.Equal('\u010A', ByteLevelAlphabet.ToChar((byte)'\n'));
        Assert.True(ByteLevelAlphabet.TryGetBytes(new string(chars), out byte[] bytes));
        Assert.Equal(Enumerable.Range(0, 256).Select(b => (byte)b), bytes);
        Assert.False(ByteLevelAlphabet.TryGetBytes("\u4E00", out _));
    }

    [Fact]
    public void AddedTokenStripOptionsSwallowAdjacentWhitespace()
    {
        using var files = new MiniTokenizerFiles();
        Qwen3Tokenizer mini = Qwen3Tokenizer.Load(files.Directory);
        int a = MiniTokenizerFiles.ByteId('a');
        int b = MiniTokenizerFiles.ByteId('b');
        Assert.Equal([a, MiniTokenizerFiles.StripId, b], mini.Encode("a \t <x>\n  b"));
        Assert.Equal([MiniTokenizerFiles.HiId, MiniTokenizerFiles.EndId], mini.Encode("hi<|end|>"));
        Assert.Equal(MiniTokenizerFiles.EndId, mini.EosTokenId);
        Assert.Equal(303, mini.VocabSize);
    }

    [Fact]
    public void NormalizedAddedTokensAreMatchedAfterNfc()
    {
        using var files = new MiniTokenizerFiles();
        Qwen3Tokenizer mini = Qwen3Tokenizer.Load(files.Directory);
        int c = MiniTokenizerFiles.ByteId('c');
        Assert.Equal([c, MiniTokenizerFiles.AccentId, c], mini.Encode("ce\u0323\u0302c"));
        Assert.Equal("c\u1ec7c", mini.Decode(mini.Encode("ce\u0302\u0323c")));
    }

    public static TheoryData<string, string, string> BrokenFiles => new()
    {
        { "no-pre-tokenizer", "tokenizer.json", "pre_tokenizer" },
        { "word-piece-model", "tokenizer.json", "model.type" },
        { "bad-merge", "tokenizer.json", "model.merges[0]" },
        { "bad-regex", "tokenizer.json", "pre_tokenizer.pretokenizers[0].pattern.Regex" },
        { "single-word-added-token", "tokenizer.json", "added_tokens[0].single_word" },
        { "missing-byte-token", "tokenizer.json", "model.vocab" },
        { "unknown-eos-token", "tokenizer_config.json", "eos_token" },
        { "eos-token-of-wrong-type", "tokenizer_config.json", "eos_token" },
    };

    [Theory]
    [MemberData(nameof(BrokenFiles))]
    public void LoadNamesTheFileAndFieldThatIsWrong(string breakage, string file, string field)
    {
        using var files = new MiniTokenizerFiles(
            tokenizer =>
            {
                JsonObject model = tokenizer["model"]!.AsObject();
                switch (breakage)
                {
                    case "no-pre-tokenizer": tokenizer.Remove("pre_tokenizer"); break;
                    case "word-piece-model": model["type"] = "WordPiece"; break;
                    case "bad-merge": model["merges"] = new JsonArray(new JsonArray(1, 2)); break;
                    case "bad-regex": tokenizer["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = "(unclosed"; break;
                    case "single-word-added-token": tokenizer["added_tokens"]![0]!["single_word"] = true; break;
                    case "missing-byte-token": model["vocab"]!.AsObject().Remove("a"); break;
                }
            },
            config =>
            {
                switch (breakage)
                {
                    case "unknown-eos-token": config["eos_token"] = "<|nope|>"; break;
                    case "eos-token-of-wrong-type": config["eos_token"] = 5; break;
                }
            });

        var error = Assert.Throws<TokenizerFormatException>(() => Qwen3Tokenizer.Load(files.Directory));
        Assert.Equal(file, error.File);
        Assert.Equal(field, error.Field);
        Assert.Contains(file, error.Message);
        Assert.Contains(field, error.Message);
    }

    [Fact]
    public void LoadReportsAMissingOrUnparsableFile()
    {
        using var files = new MiniTokenizerFiles();
        File.WriteAllText(Path.Combine(files.Directory, "tokenizer.json"), "{ not json");
        var invalid = Assert.Throws<TokenizerFormatException>(() => Qwen3Tokenizer.Load(files.Directory));
        Assert.Equal("tokenizer.json", invalid.File);
        Assert.Contains("not valid JSON", invalid.Message);

        File.Delete(Path.Combine(files.Directory, "tokenizer_config.json"));
        File.Delete(Path.Combine(files.Directory, "tokenizer.json"));
        var missing = Assert.Throws<TokenizerFormatException>(() => Qwen3Tokenizer.Load(files.Directory));
        Assert.Equal("tokenizer.json", missing.File);
        Assert.Contains("not found", missing.Message);
    }
}
