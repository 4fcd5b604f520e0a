using System.Collections.Concurrent;
using System.Diagnostics;
using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Layers;

namespace Qwen3Cluster.Grains.Hosting;

/// <summary>
/// Loads a stage's or an expert group's weights from the checkpoint, and keeps weights loaded ahead of a hand-over:
/// a silo that is to host a grain loads it here first, then the grain migrates, and its new activation takes the
/// weights at once instead of loading while traffic waits.
/// </summary>
public sealed class ShardLoader(ModelDeployment model) : IDisposable
{
    /// <summary>Preloaded weights not taken within this time (a hand-over that did not happen) are freed.</summary>
    static readonly TimeSpan Unclaimed = TimeSpan.FromMinutes(5);
    readonly ConcurrentDictionary<string, (IDisposable Weights, long Since)> _preloaded = new();
    readonly ConcurrentDictionary<ModelGrainKey, byte> _hosted = new();

    /// <summary>The stages and expert groups whose activation on this silo has its weights loaded.</summary>
    public ICollection<ModelGrainKey> Hosted => _hosted.Keys;

    /// <summary>An activation on this silo has loaded its weights (<see cref="Hosted"/>).</summary>
    public void Hosting(ModelGrainKey key) => _hosted[key] = 0;

    /// <summary>An activation on this silo has freed its weights.</summary>
    public void Released(ModelGrainKey key) => _hosted.TryRemove(key, out _);

    long _lastAsked;

    /// <summary>When another silo last asked one of this silo's shards where it runs or to move (a Stopwatch timestamp).</summary>
    public long LastAsked => Interlocked.Read(ref _lastAsked);

    /// <summary>A shard on this silo was asked where it runs (a plan keeper about to take it over) or to move.</summary>
    public void Asked() => Interlocked.Exchange(ref _lastAsked, Stopwatch.GetTimestamp());

    ModelStage LoadStage(StageKey key)
    {
        using var reader = CheckpointReader.Open(model.Path);
        using var weights = new CheckpointWeights(reader, model.Device, storage: model.Storage);
        return new ModelStage(model.Config, model.Stages[key.Stage], weights);
    }

    ExpertGroupWeights LoadExperts(ExpertGroupKey key)
    {
        var range = model.ExpertGroups[key.Group];
        using var reader = CheckpointReader.Open(model.Path);
        using var weights = new CheckpointWeights(reader, model.Device, storage: model.Storage);
        return new ExpertGroupWeights(model.Stages[key.Stage].SparseLayers(model.Config)
            .ToDictionary(layer => layer, layer => new ExpertGroup(model.Config, layer, range, weights)));
    }

    /// <summary>Loads the grain's weights now, to be taken by its activation on this silo; the seconds it took.</summary>
    public async Task<double> PreloadAsync(ModelGrainKey key)
    {
        Sweep();
        if (_preloaded.ContainsKey(key.ToString())) return 0;
        var clock = Stopwatch.StartNew();
        var weights = await Task.Run(() => Load(key));
        if (!_preloaded.TryAdd(key.ToString(), (weights, Stopwatch.GetTimestamp()))) weights.Dispose();
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>The grain's weights: those preloaded for it (a hand-over), or loaded now.</summary>
    public async Task<T> TakeOrLoadAsync<T>(ModelGrainKey key) where T : class, IDisposable =>
        TakePreloaded<T>(key) ?? (T)await Task.Run(() => Load(key));

    IDisposable Load(ModelGrainKey key) => key switch
    {
        StageKey s => LoadStage(s),
        ExpertGroupKey g => LoadExperts(g),
        _ => throw new ArgumentException($"{key} has no weights to load.", nameof(key)),
    };

    public bool HasPreloaded(ModelGrainKey key) => _preloaded.ContainsKey(key.ToString());

    /// <summary>The weights preloaded for this grain, or null.</summary>
    T? TakePreloaded<T>(ModelGrainKey key) where T : class, IDisposable
    {
        if (!_preloaded.TryRemove(key.ToString(), out var entry)) return null;
        if (entry.Weights is T weights) return weights;
        entry.Weights.Dispose();
        return null;
    }

    void Sweep()
    {
        foreach (var (key, entry) in _preloaded)
            if (Stopwatch.GetElapsedTime(entry.Since) > Unclaimed && _preloaded.TryRemove(key, out var stale)) stale.Weights.Dispose();
    }

    public void Dispose()
    {
        foreach (var key in _preloaded.Keys)
            if (_preloaded.TryRemove(key, out var entry)) entry.Weights.Dispose();
    }
}

/// <summary>One expert group's experts of every sparse layer of its stage.</summary>
public sealed class ExpertGroupWeights(Dictionary<int, ExpertGroup> layers) : IDisposable
{
    public IReadOnlyDictionary<int, ExpertGroup> Layers => layers;

    public void Dispose()
    {
        foreach (var group in layers.Values) group.Dispose();
    }
}
