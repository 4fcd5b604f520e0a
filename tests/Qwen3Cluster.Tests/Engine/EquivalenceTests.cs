using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Engine;

/// <summary>The same numbers however the work is cut: batched, cached, chunked, staged, sharded, down-cast.</summary>
public sealed class EquivalenceTests
{
    const double Tolerance = 1e-4;

    /// <summary>Each equivalence for float32 and bfloat16 checkpoints, and for int8 (Q8_0) weights made at load.</summary>
    public static TheoryData<string> Models => ["moe", "dense", "moe bf16", "dense bf16", "moe int8"];

    static string Checkpoint(string kind) => kind switch
    {
        "moe" => TestCheckpoints.Get("small-moe", TestCheckpoints.SmallMoe),
        "dense" => TestCheckpoints.Get("small-dense", TestCheckpoints.SmallDense),
        "moe bf16" => TestCheckpoints.Get("small-moe", TestCheckpoints.SmallMoe, SafetensorsDType.BF16),
        "dense bf16" => TestCheckpoints.Get("small-dense", TestCheckpoints.SmallDense, SafetensorsDType.BF16),
        _ => TestCheckpoints.Get("quantizable-moe", TestCheckpoints.QuantizableMoe, SafetensorsDType.BF16),
    };

    static LocalModel LoadKind(string kind, int stages = 1, int groups = 1, int blocks = 128, int blockSize = 4, int slices = 1) =>
        LocalModel.Load(Checkpoint(kind), new LocalModelOptions
        {
            Stages = stages,
            ExpertGroups = groups,
            ExpertSlices = slices,
            NumBlocks = blocks,
            BlockSize = blockSize,
            Storage = kind.EndsWith("int8", StringComparison.Ordinal) ? WeightStorage.Int8 : WeightStorage.Stored,
        });

    static readonly int[][] Prompts =
    [
        [5, 17, 300, 42],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 100, 200, 300, 400, 12, 13, 14, 15, 16, 17],
        [250],
        [11, 22, 33, 44, 55, 66, 77, 88, 99, 111, 122, 133, 144, 155, 166, 177, 188, 199, 211, 222, 233, 244, 255, 266, 277, 288, 299, 311, 322, 333, 344, 355, 366],
        [400, 401, 402, 403, 404, 405, 406],
    ];

    /// <summary>An engine without prefix caching unless asked: a reference that neither batches nor reuses anything.</summary>
    static GenerationEngine Engine(LocalModel model, SchedulerOptions? options = null, bool prefixCaching = false) =>
        GenerationEngine.Start(model, (options ?? new SchedulerOptions { NumBlocks = 128, BlockSize = 4 }) with { PrefixCaching = prefixCaching }, []);

    static async Task<List<EngineRunner.Result>> OneByOneAsync(GenerationEngine engine, IEnumerable<int[]> prompts, int maxTokens, int logprobs)
    {
        var results = new List<EngineRunner.Result>();
        foreach (var prompt in prompts) results.Add(await EngineRunner.RunAsync(engine, EngineRunner.Greedy(prompt, maxTokens, logprobs)));
        return results;
    }

    static LocalModel Load(string dir, int stages = 1, int groups = 1, int blocks = 128, int blockSize = 4) =>
        LocalModel.Load(dir, new LocalModelOptions { Stages = stages, ExpertGroups = groups, NumBlocks = blocks, BlockSize = blockSize });

    static void AssertSame(EngineRunner.Result expected, EngineRunner.Result actual, double tolerance = Tolerance)
    {
        Assert.Equal(expected.Ids, actual.Ids);
        for (int i = 0; i < expected.Tokens.Count; i++)
        {
            Assert.InRange(actual.Tokens[i].Logprob - expected.Tokens[i].Logprob, -tolerance, tolerance);
            Assert.Equal(expected.Tokens[i].Top.Select(t => t.Id), actual.Tokens[i].Top.Select(t => t.Id));
        }
    }

    [Theory, MemberData(nameof(Models))]
    public async Task BatchedGenerationEqualsOneByOne(string kind)
    {
        using var model = LoadKind(kind);
        await using var reference = Engine(model);
        var single = await OneByOneAsync(reference, Prompts, 12, logprobs: 3);
        await using var engine = Engine(model);
        var batched = await Task.WhenAll(Prompts.Select(p => EngineRunner.RunAsync(engine, EngineRunner.Greedy(p, 12, logprobs: 3))));
        for (int i = 0; i < Prompts.Length; i++) AssertSame(single[i], batched[i]);
        Assert.True(engine.Steps < Prompts.Length * 12, $"{engine.Steps} steps: the requests were not batched");
    }

    [Theory, MemberData(nameof(Models))]
    public async Task PrefixCacheReuseEqualsComputingFromScratch(string kind)
    {
        // Prompts that share their first blocks with the first one, and one that is the first one again.
        int[][] prompts = [Prompts[3], [.. Prompts[3][..12], 7, 8, 9], [.. Prompts[3][..9], 400, 401], Prompts[3]];
        using var model = LoadKind(kind);
        await using var reference = Engine(model);
        var expected = await OneByOneAsync(reference, prompts, 8, logprobs: 3);
        Assert.All(expected, r => Assert.Equal(0, r.Usage.CachedPromptTokens));
        await using var cached = Engine(model, prefixCaching: true);
        var actual = await OneByOneAsync(cached, prompts, 8, logprobs: 3);
        for (int i = 0; i < prompts.Length; i++) AssertSame(expected[i], actual[i]);
        // Blocks of 4: 12 shared tokens, then 8, then the repeated prompt but its last token (always computed).
        Assert.Equal([0, 12, 8, 32], actual.Select(r => r.Usage.CachedPromptTokens));
    }

    [Theory, MemberData(nameof(Models))]
    public async Task CachedDecodeMatchesFullRecompute(string kind)
    {
        using var model = LoadKind(kind);
        await using var engine = Engine(model);
        var prompt = Prompts[1];
        var generated = await EngineRunner.RunAsync(engine, EngineRunner.Greedy(prompt, 10, logprobs: 2));
        int[] all = [.. prompt, .. generated.Ids];
        using var fresh = LoadKind(kind);
        var context = new ForwardContext([new SequenceSlice(0, all.Length, Enumerable.Range(0, 64).ToArray())], 4,
            Enumerable.Range(0, all.Length).ToArray());
        using var logits = await fresh.ExecuteAsync(context, all, CancellationToken.None);
        using var logprobs = logits.log_softmax(-1);
        for (int i = 0; i < generated.Ids.Length; i++)
        {
            int row = prompt.Length - 1 + i;
            Assert.Equal(generated.Ids[i], (int)logits[row].argmax().item<long>());
            Assert.InRange(logprobs[row, generated.Ids[i]].item<float>() - generated.Tokens[i].Logprob, -Tolerance, Tolerance);
        }
    }

    [Theory, MemberData(nameof(Models))]
    public async Task ChunkedPrefillAndPreemptionChangeNothing(string kind)
    {
        using var model = LoadKind(kind);
        await using var reference = Engine(model);
        var expected = await OneByOneAsync(reference, Prompts, 12, logprobs: 2);

        using var tight = LoadKind(kind, blocks: 12);
        await using var engine = Engine(tight, new SchedulerOptions { NumBlocks = 12, BlockSize = 4, MaxBatchTokens = 7 });
        var actual = await Task.WhenAll(Prompts.Select(p => EngineRunner.RunAsync(engine, EngineRunner.Greedy(p, 12, logprobs: 2))));
        for (int i = 0; i < Prompts.Length; i++) AssertSame(expected[i], actual[i]);
        Assert.True(engine.Preemptions > 0, "the pool was meant to be too small for every sequence at once");
        Assert.Equal(0, engine.UsedBlocks);
    }

    [Theory, MemberData(nameof(Models))]
    public async Task StagesAndExpertGroupsGiveTheSameOutput(string kind)
    {
        using var whole = LoadKind(kind);
        using var split = LoadKind(kind, stages: 3, groups: kind.StartsWith("moe", StringComparison.Ordinal) ? 3 : 1);
        await using var a = Engine(whole);
        await using var b = Engine(split);
        foreach (var prompt in Prompts.Take(3))
        {
            AssertSame(await EngineRunner.RunAsync(a, EngineRunner.Greedy(prompt, 8, logprobs: 3)),
                await EngineRunner.RunAsync(b, EngineRunner.Greedy(prompt, 8, logprobs: 3)), 1e-5);
        }
    }

    /// <summary>
    /// Expert groups cut into slices of their intermediate rows (tensor-parallel experts) give the whole experts'
    /// output: float32 and bfloat16 (int8 at the group's level in <see cref="ExpertSliceTests"/>, where the slices are
    /// wide enough to quantise as the whole does).
    /// </summary>
    [Theory]
    [InlineData("moe", 2, 2)]
    [InlineData("moe", 1, 3)]
    [InlineData("moe bf16", 3, 2)]
    public async Task ExpertSlicesGiveTheSameOutput(string kind, int groups, int slices)
    {
        using var whole = LoadKind(kind);
        using var sliced = LoadKind(kind, groups: groups, slices: slices);
        await using var a = Engine(whole);
        await using var b = Engine(sliced);
        foreach (var prompt in Prompts.Take(3))
        {
            AssertSame(await EngineRunner.RunAsync(a, EngineRunner.Greedy(prompt, 8, logprobs: 3)),
                await EngineRunner.RunAsync(b, EngineRunner.Greedy(prompt, 8, logprobs: 3)), 1e-5);
        }
    }

    [Fact]
    public async Task ShardedCheckpointEqualsSingleFile()
    {
        var config = TestCheckpoints.SmallMoe;
        string single = TestCheckpoints.Get("shard-test", config, shards: 1, seed: 3);
        string sharded = TestCheckpoints.Get("shard-test", config, shards: 3, seed: 3);
        Assert.True(File.Exists(Path.Combine(sharded, CheckpointReader.IndexFileName)));
        Assert.Equal(3, Directory.GetFiles(sharded, "model-*-of-00003.safetensors").Length);
        Assert.Equal(await Logits(single), await Logits(sharded));
    }

    [Fact]
    public async Task Bf16CheckpointEqualsItsFloat32UpcastByHand()
    {
        var config = TestCheckpoints.SmallMoe;
        string bf16 = TestCheckpoints.Get("bf16-test", config, SafetensorsDType.BF16, seed: 5);
        string upcast = TestCheckpoints.NewDirectory("upcast");
        foreach (var file in Directory.GetFiles(bf16, "*.json")) File.Copy(file, Path.Combine(upcast, Path.GetFileName(file)));
        using (var reader = CheckpointReader.Open(bf16))
        {
            // The upcast is made here from the stored bits (a bfloat16 is the top half of a float32), not by the
            // loader under test.
            var specs = reader.TensorNames.Select(name =>
            {
                var (file, entry) = reader.Locate(name);
                Assert.Equal(SafetensorsDType.BF16, entry.DType);
                var floats = file.WithBytes(entry, (pointer, length) => Bf16Bits.ToFloats(pointer, length));
                return new TensorSpec(name, entry.Shape, SafetensorsDType.F32, () => tensor(floats).reshape(entry.Shape));
            }).ToArray();
            SafetensorsWriter.WriteCheckpoint(upcast, specs);
        }
        // The same products, bfloat16 widened in registers rather than in memory: equal up to summation order.
        var expected = await Logits(upcast);
        var actual = await Logits(bf16);
        Assert.Equal(expected.Length, actual.Length);
        double worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(worst < Tolerance, $"max |logit difference| {worst}");
    }

    static async Task<float[]> Logits(string dir)
    {
        using var model = Load(dir);
        var prompt = Prompts[3];
        var context = new ForwardContext([new SequenceSlice(0, prompt.Length, Enumerable.Range(0, 16).ToArray())], 4,
            Enumerable.Range(0, prompt.Length).ToArray());
        using var logits = await model.ExecuteAsync(context, prompt, CancellationToken.None);
        return logits.data<float>().ToArray();
    }
}

/// <summary>bfloat16 by hand: its 16 bits are the high half of the float32 with the same value.</summary>
static class Bf16Bits
{
    public static unsafe float[] ToFloats(IntPtr pointer, long length)
    {
        var bits = new ReadOnlySpan<ushort>((void*)pointer, checked((int)(length / 2)));
        var floats = new float[bits.Length];
        for (int i = 0; i < bits.Length; i++) floats[i] = BitConverter.Int32BitsToSingle(bits[i] << 16);
        return floats;
    }
}
