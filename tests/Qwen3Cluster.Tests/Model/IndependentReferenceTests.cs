using System.Text.Json;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.Tests.Model;

/// <summary>
/// Two checkpoints made and computed without this project's code: tests/tools/make_reference_fixtures.py writes
/// them with its own RNG and safetensors writer and runs transformers' Qwen3 / Qwen3-MoE forward pass in float64
/// (fixtures/reference-fixtures.README.md). tiny-dense-yarn has tied embeddings and YaRN; tiny-moe-mixed has a
/// dense layer among its sparse ones and top-k weights that are not renormalised. Tolerance 1e-4, as stated there.
/// </summary>
public sealed class IndependentReferenceTests
{
    const double Tolerance = 1e-4;

    public static TheoryData<string> Checkpoints => ["tiny-dense-yarn", "tiny-moe-mixed"];

    static JsonElement Reference(string name) => JsonDocument.Parse(File.ReadAllText(Fixtures.File($"{name}.reference.json"))).RootElement;

    static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [Theory, MemberData(nameof(Checkpoints))]
    public async Task PrefillLogitsMatchAtEveryPosition(string name)
    {
        var reference = Reference(name);
        int[] prompt = Ints(reference.GetProperty("prompt"));
        int[] sampleIds = Ints(reference.GetProperty("logits_sample_ids"));
        using var model = LocalModel.Load(Fixtures.File(name), new LocalModelOptions { NumBlocks = 8, BlockSize = 4 });
        var context = new ForwardContext([new SequenceSlice(0, prompt.Length, [0, 1, 2, 3])], 4, Enumerable.Range(0, prompt.Length).ToArray());
        using var logits = await model.ExecuteAsync(context, prompt, CancellationToken.None);
        using var logprobs = logits.log_softmax(-1);
        using var logsumexp = logits.logsumexp(-1);
        foreach (var position in reference.GetProperty("positions").EnumerateArray())
        {
            int pos = position.GetProperty("position").GetInt32();
            Assert.Equal(position.GetProperty("argmax").GetInt32(), (int)logits[pos].argmax().item<long>());
            Assert.InRange(logsumexp[pos].item<float>() - position.GetProperty("logsumexp").GetDouble(), -Tolerance, Tolerance);
            var samples = position.GetProperty("logits_sample").EnumerateArray().ToArray();
            for (int i = 0; i < sampleIds.Length; i++)
                Assert.InRange(logits[pos, sampleIds[i]].item<float>() - samples[i].GetDouble(), -Tolerance, Tolerance);
            foreach (var top in position.GetProperty("top5").EnumerateArray())
                Assert.InRange(logprobs[pos, top[0].GetInt32()].item<float>() - top[1].GetDouble(), -Tolerance, Tolerance);
        }
    }

    [Theory, MemberData(nameof(Checkpoints))]
    public async Task GreedyDecodingWithTheKvCacheMatches(string name)
    {
        var reference = Reference(name);
        int[] prompt = Ints(reference.GetProperty("prompt"));
        int[] expected = Ints(reference.GetProperty("generated"));
        var expectedLogprobs = reference.GetProperty("generated_logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        using var model = LocalModel.Load(Fixtures.File(name), new LocalModelOptions { NumBlocks = 16, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(model, new SchedulerOptions { NumBlocks = 16, BlockSize = 4 }, model.Config.EosTokenIds);
        var result = await EngineRunner.RunAsync(engine, EngineRunner.Greedy(prompt, expected.Length, logprobs: 5));
        Assert.Equal(expected, result.Ids);
        for (int i = 0; i < expected.Length; i++) Assert.InRange(result.Tokens[i].Logprob - expectedLogprobs[i], -Tolerance, Tolerance);
        var steps = reference.GetProperty("generation_steps").EnumerateArray().ToArray();
        for (int i = 0; i < steps.Length; i++)
            Assert.Equal(steps[i].GetProperty("top5").EnumerateArray().Select(t => t[0].GetInt32()), result.Tokens[i].Top.Select(t => t.Id));
    }
}
