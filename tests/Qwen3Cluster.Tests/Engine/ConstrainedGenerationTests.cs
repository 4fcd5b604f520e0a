using System.Text;
using System.Text.Json;
using Json.Schema;
using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.Tests.Engine;

/// <summary>
/// Constrained decoding inside the engine's batched step, on a small random model with a vocabulary of its own
/// (every byte, then multi-byte pieces of JSON-ish text, the last id an end token): batched == one by one with
/// constraints too, a constrained greedy token is the model's best allowed one, and every output is valid.
/// </summary>
public sealed class ConstrainedGenerationTests
{
    const int Vocab = 512;
    const int End = Vocab - 1;

    static readonly string Schema = """{"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 999}, "name": {"type": "string", "maxLength": 12}, "ok": {"type": "boolean"}}, "required": ["id", "name", "ok"]}""";

    /// <summary>Bytes 0-255 as themselves, then pieces such as <c>"na</c>, <c>": </c>, <c>true</c>; the last id has no text (an end).</summary>
    static TokenVocabulary Vocabulary()
    {
        string[] pieces = ["{\"", "\": ", ", \"", "true", "false", "id", "name", "ok", "\"}", "}", "12", "345", "ab", "cd", " x", "\\n", "na", "me\"", "ok\"", "\": \"", "null", "\\u00e9", "é", "zz"];
        var random = new Random(4);
        var spellings = new byte[Vocab][];
        for (int id = 0; id < Vocab; id++)
        {
            spellings[id] = id < 256 ? [(byte)id]
                : id == End ? []
                : Encoding.UTF8.GetBytes(pieces[(id - 256) % pieces.Length] + (id - 256 < pieces.Length ? "" : pieces[random.Next(pieces.Length)]));
        }
        return new TokenVocabulary(spellings);
    }

    static GenerationRequest Request(int[] prompt, int maxTokens) =>
        EngineRunner.Greedy(prompt, maxTokens, logprobs: 2) with { Constraint = new OutputConstraint(ConstraintKind.JsonSchema, Schema) };

    static LocalModel Model() =>
        LocalModel.Load(TestCheckpoints.Get("small-moe", TestCheckpoints.SmallMoe), new LocalModelOptions { NumBlocks = 128, BlockSize = 4 });

    static readonly SchedulerOptions Options = new() { NumBlocks = 128, BlockSize = 4, PrefixCaching = false };

    static readonly int[][] Prompts = [[5, 17, 300, 42], [9, 8, 7, 6, 5], [250], [400, 401, 402, 403, 404, 405, 406, 12, 13]];

    [Fact]
    public async Task ConstrainedBatchedGenerationEqualsOneByOneAndEveryOutputValidates()
    {
        using var model = Model();
        var vocabulary = Vocabulary();
        await using var engine = GenerationEngine.Start(model, Options, [End], vocabulary: vocabulary);
        var single = new List<EngineRunner.Result>();
        foreach (var prompt in Prompts) single.Add(await EngineRunner.RunAsync(engine, Request(prompt, 40)));
        var batched = await Task.WhenAll(Prompts.Select(p => EngineRunner.RunAsync(engine, Request(p, 40))));
        var schema = JsonSchema.FromText(Schema);
        for (int i = 0; i < Prompts.Length; i++)
        {
            Assert.Equal(single[i].Ids, batched[i].Ids);
            for (int t = 0; t < single[i].Tokens.Count; t++)
                Assert.InRange(batched[i].Tokens[t].Logprob - single[i].Tokens[t].Logprob, -1e-4, 1e-4);
            string text = Encoding.UTF8.GetString([.. single[i].Ids.SelectMany(id => vocabulary.Spelling(id).ToArray())]);
            using var json = JsonDocument.Parse(text);
            Assert.True(schema.Evaluate(json.RootElement).IsValid, text);
            Assert.Equal(FinishReasons.Stop, single[i].FinishReason);
        }
    }

    [Fact]
    public async Task AConstrainedGreedyTokenIsTheModelsBestAllowedOne()
    {
        using var model = Model();
        var vocabulary = Vocabulary();
        await using var constrained = GenerationEngine.Start(model, Options, [End], vocabulary: vocabulary);
        await using var free = GenerationEngine.Start(model, Options, [End]);
        int[] prompt = [5, 17, 300, 42];
        var result = await EngineRunner.RunAsync(constrained, Request(prompt, 30));
        var compiled = vocabulary.Compile(new OutputConstraint(ConstraintKind.JsonSchema, Schema));
        var state = new ConstraintState(compiled);
        for (int t = 0; t < result.Tokens.Count; t++)
        {
            // The unconstrained model on the same tokens: its logits, masked here, pick what the engine picked.
            var reference = await EngineRunner.RunAsync(free, EngineRunner.Greedy([.. prompt, .. result.Ids.Take(t)], 1, logprobs: Vocab));
            var logits = new float[Vocab];
            foreach (var top in reference.Tokens[0].Top) logits[top.Id] = top.Logprob;
            state.Apply(logits, 30 - t - 1, [End]);
            int best = Array.IndexOf(logits, logits.Max());
            Assert.Equal(best, result.Ids[t]);
            state.Advance(result.Ids[t]);
        }
    }
}
