using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Engine;

/// <summary>Expert groups cut into slices of the experts' intermediate rows: the slices' outputs add up to the whole group's.</summary>
public sealed class ExpertSliceTests
{
    /// <summary>A MoE whose intermediate size cuts into two slices of 32 rows, so int8 (Q8_0) quantises each slice's down projection as the whole's.</summary>
    static Qwen3Config WideMoe => ModelPresets.Moe(layers: 1, hidden: 64, heads: 4, kvHeads: 2, headDim: 16,
        experts: 8, topK: 2, moeIntermediate: 64, intermediate: 64, vocab: 256);

    public static TheoryData<SafetensorsDType, WeightStorage, int, int> Cases => new()
    {
        { SafetensorsDType.F32, WeightStorage.Stored, 1, 2 },
        { SafetensorsDType.F32, WeightStorage.Stored, 7, 4 },
        { SafetensorsDType.BF16, WeightStorage.Stored, 7, 2 },
        { SafetensorsDType.BF16, WeightStorage.Float32, 3, 4 },
        { SafetensorsDType.BF16, WeightStorage.Int8, 1, 2 },
        { SafetensorsDType.BF16, WeightStorage.Int8, 7, 2 },
        { SafetensorsDType.F32, WeightStorage.Int8, 19, 2 },
    };

    [Theory, MemberData(nameof(Cases))]
    public void SlicesAddUpToTheWholeGroup(SafetensorsDType dtype, WeightStorage storage, int tokens, int slices)
    {
        var config = WideMoe;
        string dir = TestCheckpoints.Get("wide-moe", config, dtype);
        using var reader = CheckpointReader.Open(dir);
        using var weights = new CheckpointWeights(reader, new Device("cpu"), storage: storage);
        var generator = new Generator(11, new Device("cpu"));
        using var x = randn([tokens, config.HiddenSize], generator: generator);
        using var logits = randn([tokens, config.NumExperts], generator: generator);
        var (values, ids) = logits.topk(config.NumExpertsPerTok, dim: 1);
        using var routingWeights = values.softmax(1);

        // Experts [2, 8): some tokens' experts lie outside, as a group's share of a step has them.
        using var whole = new ExpertGroup(config, 0, new ExpertRange(2, 8), weights);
        using var expected = whole.Forward(x, ids, routingWeights);
        Assert.True(expected.abs().max().item<float>() > 0.01f, "the group should have computed something");

        var parts = ExpertRange.Split(config.NumExperts, 1, slices).Select(r => new ExpertGroup(config, 0, r with { Lo = 2 }, weights)).ToList();
        using var sum = zeros_like(expected);
        foreach (var part in parts)
        {
            Assert.Equal(config.MoeIntermediateSize / slices, part.Range.Part(config.MoeIntermediateSize).Count);
            using var output = part.Forward(x, ids, routingWeights);
            sum.add_(output);
            part.Dispose();
        }
        float scale = expected.abs().max().item<float>();
        Assert.True((sum - expected).abs().max().item<float>() <= 1e-5f * Math.Max(1f, scale),
            $"slices differ from the whole group by {(sum - expected).abs().max().item<float>()} (outputs up to {scale})");
        values.Dispose();
        ids.Dispose();
    }

    [Fact]
    public void SlicesHoldTheirRowsAndColumnsOfEachExpert()
    {
        var config = WideMoe;
        string dir = TestCheckpoints.Get("wide-moe", config, SafetensorsDType.F32);
        using var reader = CheckpointReader.Open(dir);
        using var weights = new CheckpointWeights(reader, new Device("cpu"), storage: WeightStorage.Stored);
        using var slice = new ExpertGroup(config, 0, new ExpertRange(4, 6, 1, 2), weights);
        var parameters = slice.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var gate = reader.Load(ExpertGroup.ExpertWeightName(0, 5, "gate_proj"), [64, 64], ScalarType.Float32, new Device("cpu"));
        using var down = reader.Load(ExpertGroup.ExpertWeightName(0, 5, "down_proj"), [64, 64], ScalarType.Float32, new Device("cpu"));
        Assert.Equal([2L, 32, 64], parameters["gate_proj"].shape);
        Assert.Equal([2L, 64, 32], parameters["down_proj"].shape);
        Assert.Equal(0f, (parameters["gate_proj"][1] - gate.narrow(0, 32, 32)).abs().max().item<float>());
        Assert.Equal(0f, (parameters["down_proj"][1] - down.narrow(1, 32, 32)).abs().max().item<float>());
    }

    /// <summary>Progress counts each slice's reads: the last report is the total, not past it.</summary>
    [Fact]
    public void LoadingSlicesReportsEveryTensorOnce()
    {
        string dir = TestCheckpoints.Get("wide-moe", WideMoe, SafetensorsDType.F32);
        var reports = new List<Qwen3Cluster.Model.Engine.LoadProgress>();
        using (Qwen3Cluster.Model.Engine.LocalModel.Load(dir, new Qwen3Cluster.Model.Engine.LocalModelOptions
               { ExpertGroups = 2, ExpertSlices = 2, NumBlocks = 16, BlockSize = 4 }, new Recorder(reports.Add)))
        {
        }
        Assert.NotEmpty(reports);
        Assert.Equal(reports[^1].Total, reports[^1].Loaded);
    }

    sealed class Recorder(Action<Qwen3Cluster.Model.Engine.LoadProgress> report) : IProgress<Qwen3Cluster.Model.Engine.LoadProgress>
    {
        public void Report(Qwen3Cluster.Model.Engine.LoadProgress value) => report(value);
    }

    /// <summary>
    /// Off the CPU (here the meta device, which holds shapes only) a group loads matrix by matrix through the
    /// interface's stacking, slices as the CPU does; a part of a quantised matrix is refused rather than cut from its blocks.
    /// </summary>
    [Fact]
    public void OffTheCpuSlicesLoadMatrixByMatrix()
    {
        var config = WideMoe;
        var meta = new MetaWeights();
        using var slice = new ExpertGroup(config, 0, new ExpertRange(0, 8, 1, 4), meta);
        var shapes = slice.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal([8L, 16, 64], shapes["gate_proj"]);
        Assert.Equal([8L, 64, 16], shapes["down_proj"]);

        string dir = TestCheckpoints.Get("wide-moe", config, SafetensorsDType.BF16);
        using var reader = CheckpointReader.Open(dir);
        // A checkpoint's weights off the CPU take the same way (it once called itself there until the stack overflowed).
        using (var offCpu = new CheckpointWeights(reader, new Device(TorchSharp.DeviceType.META)))
        using (var fromCheckpoint = new ExpertGroup(config, 0, new ExpertRange(2, 4, 0, 2), offCpu))
        {
            Assert.Equal([2L, 64, 32], fromCheckpoint.named_parameters().Single(p => p.name == "down_proj").parameter.shape);
        }

        using var int8 = new CheckpointWeights(reader, new Device("cpu"), storage: WeightStorage.Int8);
        IWeightSource wrapped = new Wrapper(int8);
        Assert.Throws<NotSupportedException>(() => wrapped.LoadStacked([ExpertGroup.ExpertWeightName(0, 0, "down_proj")], 64, 64,
            MatrixPart.ColumnsOf(0, 32)));
    }

    /// <summary>Another weight source over a checkpoint's, with the interface's own stacking.</summary>
    sealed class Wrapper(CheckpointWeights inner) : IWeightSource
    {
        public Device Device => inner.Device;
        public Tensor Load(string name, params long[] shape) => inner.Load(name, shape);
        public Tensor LoadMatrix(string name, long rows, long cols) => inner.LoadMatrix(name, rows, cols);
        public bool Contains(string name) => inner.Contains(name);
    }

    [Fact]
    public void ASliceCountThatDoesNotCutTheIntermediateSizeIsRefused()
    {
        var config = WideMoe;
        string dir = TestCheckpoints.Get("wide-moe", config, SafetensorsDType.F32);
        using var reader = CheckpointReader.Open(dir);
        using var weights = new CheckpointWeights(reader, new Device("cpu"));
        var error = Assert.Throws<ArgumentException>(() => new ExpertGroup(config, 0, new ExpertRange(0, 8, 0, 3), weights));
        Assert.Contains("64", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ExpertGroup(config, 0, new ExpertRange(0, 8, 2, 2), weights));
        Assert.Throws<ArgumentOutOfRangeException>(() => ExpertRange.Split(8, 2, 0));
    }
}
