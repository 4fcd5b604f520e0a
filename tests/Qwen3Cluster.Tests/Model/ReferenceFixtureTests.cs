using System.Text.Json;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Model;

/// <summary>
/// The tiny MoE reference fixture: logits from an independent float32 implementation of transformers'
/// Qwen3MoeForCausalLM (fixtures/tiny-moe.README.md). Tolerance 1e-4 on logits and log-probs, as it states.
/// </summary>
public sealed class ReferenceFixtureTests
{
    static readonly int[] Prompt = [17, 512, 3001, 99, 4000, 7, 256, 1024, 2048, 33, 77, 1500, 2999, 64, 900, 12];
    const double Tolerance = 1e-4;

    [Fact]
    public async Task PrefillLogitsMatchTheReferenceAtEveryPosition()
    {
        using var model = LocalModel.Load(Fixtures.TinyMoe, new LocalModelOptions { NumBlocks = 64, BlockSize = 16 });
        var context = new ForwardContext([new SequenceSlice(0, Prompt.Length, [0, 1])], 16,
            Enumerable.Range(0, Prompt.Length).ToArray());
        using var logits = await model.ExecuteAsync(context, Prompt, CancellationToken.None);
        var actual = logits.data<float>().ToArray();
        var expected = ReadFloats(Fixtures.File("tiny-moe.logits.f32"));
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(maxDiff < Tolerance, $"max |logit difference| {maxDiff}");

        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File("tiny-moe.logits.json")));
        using var logprobs = logits.log_softmax(-1);
        foreach (var position in doc.RootElement.GetProperty("positions").EnumerateArray())
        {
            int pos = position.GetProperty("pos").GetInt32();
            Assert.Equal(position.GetProperty("argmax").GetInt32(), logits[pos].argmax().item<long>());
            foreach (var top in position.GetProperty("top").EnumerateArray())
            {
                int id = top[0].GetInt32();
                Assert.InRange(logprobs[pos, id].item<float>() - top[1].GetDouble(), -Tolerance, Tolerance);
            }
        }
    }

    [Fact]
    public async Task GreedyDecodeWithTheKvCacheMatchesTheReference()
    {
        using var model = LocalModel.Load(Fixtures.TinyMoe, new LocalModelOptions { NumBlocks = 64, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(model, new SchedulerOptions { NumBlocks = 64, BlockSize = 4 }, model.Config.EosTokenIds);
        var result = await EngineRunner.RunAsync(engine, EngineRunner.Greedy(Prompt, 8, logprobs: 5));

        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File("tiny-moe.generate.json")));
        var expected = doc.RootElement.GetProperty("generated").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(expected, result.Ids);
        Assert.Equal(FinishReasons.Length, result.FinishReason);
        var steps = doc.RootElement.GetProperty("steps").EnumerateArray().ToArray();
        for (int i = 0; i < steps.Length; i++)
        {
            var top = steps[i].GetProperty("top").EnumerateArray().ToArray();
            Assert.Equal(5, result.Tokens[i].Top.Count);
            for (int j = 0; j < top.Length; j++)
            {
                Assert.Equal(top[j][0].GetInt32(), result.Tokens[i].Top[j].Id);
                Assert.InRange(result.Tokens[i].Top[j].Logprob - top[j][1].GetDouble(), -Tolerance, Tolerance);
            }
            Assert.InRange(result.Tokens[i].Logprob - top[0][1].GetDouble(), -Tolerance, Tolerance);
        }
    }

    [Fact]
    public async Task ThreeTurnsIntoOneCacheMatchTheReference()
    {
        using var model = LocalModel.Load(Fixtures.TinyMoe, new LocalModelOptions { NumBlocks = 64, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(model, new SchedulerOptions { NumBlocks = 64, BlockSize = 4 }, model.Config.EosTokenIds);
        // The fixture records ids; the log-probs are checked against the whole conversation computed from scratch, by
        // a model of its own (a model's KV pool belongs to one engine).
        using var fresh = LocalModel.Load(Fixtures.TinyMoe, new LocalModelOptions { NumBlocks = 64, BlockSize = 4 });
        await using var scratch = GenerationEngine.Start(fresh, new SchedulerOptions { NumBlocks = 64, BlockSize = 4, PrefixCaching = false }, model.Config.EosTokenIds);
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.File("tiny-moe.multiturn.json")));
        int[][] turns = [[17, 512, 3001, 99], [4000, 7, 256], [1024, 2048]];
        var history = new List<int>();
        var turnResults = doc.RootElement.GetProperty("turns").EnumerateArray().ToArray();
        for (int t = 0; t < turns.Length; t++)
        {
            history.AddRange(turns[t]);
            var request = EngineRunner.Greedy(history.ToArray(), 3) with
            {
                ParkAs = "conversation",
                ResumeFrom = t == 0 ? null : "conversation",
            };
            var result = await EngineRunner.RunAsync(engine, request);
            var expected = turnResults[t].GetProperty("generated").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(expected, result.Ids);
            var recomputed = await EngineRunner.RunAsync(scratch, EngineRunner.Greedy(history.ToArray(), 3));
            Assert.Equal(0, recomputed.Usage.CachedPromptTokens);
            for (int i = 0; i < expected.Length; i++)
                Assert.InRange(result.Tokens[i].Logprob - recomputed.Tokens[i].Logprob, -Tolerance, Tolerance);
            Assert.Equal(t == 0 ? 0 : history.Count - turns[t].Length, result.Usage.CachedPromptTokens);
            history.AddRange(result.Ids);
        }
    }

    static float[] ReadFloats(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var floats = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, floats, 0, bytes.Length);
        return floats;
    }
}
