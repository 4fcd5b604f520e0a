using System.Text.Json;
using System.Text.Json.Nodes;

namespace Qwen3Cluster.Model.Config;

/// <summary>
/// generation_config.json: the end-of-sequence ids, and the sampling defaults a request that does not set its
/// own inherits (as vLLM and transformers do).
/// </summary>
public sealed record GenerationConfig
{
    public const string FileName = "generation_config.json";

    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? BosTokenId { get; init; }
    public int? PadTokenId { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    public double? MinP { get; init; }
    public double? RepetitionPenalty { get; init; }
    public bool DoSample { get; init; }

    /// <summary>The file in <paramref name="directory"/>, or the eos ids of config.json when there is none.</summary>
    public static GenerationConfig Load(string directory, Qwen3Config config)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return new GenerationConfig { EosTokenIds = config.EosTokenIds, BosTokenId = config.BosTokenId };
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var eos = Ints(root, "eos_token_id");
            return new GenerationConfig
            {
                EosTokenIds = eos.Count > 0 ? eos : config.EosTokenIds,
                BosTokenId = Ints(root, "bos_token_id").FirstOrDefault(config.BosTokenId ?? -1) is var b && b >= 0 ? b : null,
                PadTokenId = Ints(root, "pad_token_id") is [var pad, ..] ? pad : null,
                Temperature = Number(root, "temperature"),
                TopP = Number(root, "top_p"),
                TopK = Number(root, "top_k") is { } k ? (int)k : null,
                MinP = Number(root, "min_p"),
                RepetitionPenalty = Number(root, "repetition_penalty"),
                DoSample = root.TryGetProperty("do_sample", out var s) && s.ValueKind == JsonValueKind.True,
            };
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{path}: not valid JSON ({e.Message}).");
        }
    }

    public string ToJson() => new JsonObject
    {
        ["bos_token_id"] = BosTokenId,
        ["do_sample"] = DoSample,
        ["eos_token_id"] = new JsonArray(EosTokenIds.Select(i => (JsonNode)i).ToArray()),
        ["pad_token_id"] = PadTokenId,
        ["temperature"] = Temperature,
        ["top_k"] = TopK,
        ["top_p"] = TopP,
        ["transformers_version"] = "4.51.0",
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>What Qwen3 checkpoints ship: ends at &lt;|im_end|&gt; or &lt;|endoftext|&gt;, samples at 0.6 / 20 / 0.95.</summary>
    public static GenerationConfig Qwen3Default => new()
    {
        BosTokenId = 151643,
        PadTokenId = 151643,
        EosTokenIds = [151645, 151643],
        DoSample = true,
        Temperature = 0.6,
        TopK = 20,
        TopP = 0.95,
    };

    static IReadOnlyList<int> Ints(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var v)) return [];
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int single)) return [single];
        if (v.ValueKind == JsonValueKind.Array)
            return v.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Number).Select(e => e.GetInt32()).ToArray();
        return [];
    }

    static double? Number(JsonElement root, string name) =>
        root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
}
