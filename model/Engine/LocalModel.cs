using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Layers;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Engine;

/// <summary>How a model is cut and placed inside one process.</summary>
public sealed record LocalModelOptions
{
    public int Stages { get; init; } = 1;
    public int ExpertGroups { get; init; } = 1;
    /// <summary>Slices each expert group's experts are cut into along their intermediate size (<see cref="ExpertRange"/>).</summary>
    public int ExpertSlices { get; init; } = 1;
    public int NumBlocks { get; init; } = 2048;
    public int BlockSize { get; init; } = 16;
    public string Device { get; init; } = "cpu";
    public WeightStorage Storage { get; init; } = WeightStorage.Stored;
}

/// <summary>Checkpoint loading progress: tensors loaded so far of the total, and the latest one.</summary>
public readonly record struct LoadProgress(int Loaded, int Total, string Tensor);

/// <summary>
/// The whole model in this process: its stages in order, each with its KV pool and its expert groups,
/// run one after the other. The single-process engine, and the reference the cluster must equal.
/// </summary>
public sealed class LocalModel : IModelExecutor, IDisposable
{
    readonly (ModelStage Stage, KvCachePool Pool, IExpertDispatcher Experts, ExpertGroup[] Groups)[] _stages;

    public Qwen3Config Config { get; }
    public Device Device { get; }

    LocalModel(Qwen3Config config, Device device,
        (ModelStage, KvCachePool, IExpertDispatcher, ExpertGroup[])[] stages)
    {
        Config = config;
        Device = device;
        _stages = stages;
    }

    public static LocalModel Load(string directory, LocalModelOptions options, IProgress<LoadProgress>? progress = null)
    {
        var config = Qwen3Config.Load(directory);
        var device = new Device(options.Device);
        using var reader = CheckpointReader.Open(directory);
        var ranges = StageRange.Split(config.NumHiddenLayers, options.Stages);
        var groups = config.IsMoe && config.NumExperts > 0 ? ExpertRange.Split(config.NumExperts, options.ExpertGroups, options.ExpertSlices) : [];
        var counter = new LoadCounter(CountTensors(config, ranges, groups), progress);
        using var weights = new CheckpointWeights(reader, device, counter, options.Storage);
        var stages = ranges.Select(range =>
        {
            var stage = new ModelStage(config, range, weights);
            var experts = range.SparseLayers(config)
                .SelectMany(layer => groups.Select(g => new ExpertGroup(config, layer, g, weights)))
                .ToArray();
            var byLayer = experts.GroupBy(e => e.Layer).ToDictionary(g => g.Key, g => g.ToArray());
            var dispatcher = new PartitionedExperts(groups, (g, _, layer, x, ids, w, _) =>
                ValueTask.FromResult<ExpertGroupOutput>(() => ValueTask.FromResult(byLayer[layer][g].Forward(x, ids, w))));
            return (stage, stage.CreatePool(options.NumBlocks, options.BlockSize), (IExpertDispatcher)dispatcher, experts);
        }).ToArray();
        return new LocalModel(config, device, stages);
    }

    /// <summary>
    /// How many tensors loading these stages and groups reads: the meta device builds them for free. A range's slices
    /// after its first read its experts' tensors again, each counted on a meta source of its own.
    /// </summary>
    public static int CountTensors(Qwen3Config config, IEnumerable<StageRange> ranges, IReadOnlyList<ExpertRange> groups,
        MetaWeights? meta = null)
    {
        meta ??= new MetaWeights();
        int again = 0;
        foreach (var range in ranges)
        {
            using var stage = new ModelStage(config, range, meta);
            foreach (int layer in range.SparseLayers(config))
            {
                foreach (var g in groups)
                {
                    var source = g.Slice == 0 ? meta : new MetaWeights();
                    using (new ExpertGroup(config, layer, g, source)) { }
                    if (source != meta) again += source.Requested.Count;
                }
            }
        }
        return meta.Requested.Count + again;
    }

    public async ValueTask<Tensor> ExecuteAsync(ForwardContext context, int[] inputIds, CancellationToken cancellationToken)
    {
        var hidden = tensor(inputIds.Select(i => (long)i).ToArray(), device: Device);
        foreach (var (stage, pool, experts, _) in _stages)
        {
            using var input = hidden;
            hidden = await stage.ForwardAsync(input, context, pool, experts, cancellationToken);
        }
        return hidden;
    }

    public void Dispose()
    {
        foreach (var (stage, pool, _, groups) in _stages)
        {
            stage.Dispose();
            pool.Dispose();
            foreach (var g in groups) g.Dispose();
        }
    }

    sealed class LoadCounter(int total, IProgress<LoadProgress>? progress) : IProgress<string>
    {
        int _loaded;

        public void Report(string tensor) => progress?.Report(new LoadProgress(++_loaded, total, tensor));
    }
}
