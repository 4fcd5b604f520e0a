using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Qwen3Cluster.Grains.DataPlane;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;

namespace Qwen3Cluster.Grains;

/// <summary>
/// Experts [Lo, Hi) of every sparse layer of one stage, pinned to its planned silo. It reads only those experts'
/// tensors and, per call, runs them on every token of the step that was routed to them. A copy of a hot group
/// (<see cref="ExpertGroupKey.Copy"/> above 0) is the same with its own activation on another silo; it unloads once
/// no stage has called it for <see cref="HotExpertOptions.IdleSeconds"/>.
/// </summary>
[PlannedPlacement, CollectionAgeLimit(AlwaysActive = true)]
public sealed partial class ExpertGroupGrain(
    ModelDeployment model,
    ShardLoader loader,
    IOptions<HotExpertOptions> hotExperts,
    IOptions<TelemetryOptions> telemetry,
    ExpertDataPlane dataPlane,
    ILogger<ExpertGroupGrain> logger)
    : Grain, IExpertGroupGrain
{
    ExpertGroupWeights? _weights;
    ExpertCallee? _callee;
    readonly object _computing = new();
    long _calls;
    long _routed;
    double _loadSeconds;
    bool _handedOver;
    long _lastCall = Stopwatch.GetTimestamp();

    ExpertGroupKey? _key;
    ExpertGroupKey Key => _key ??= ModelGrainKey.Parse<ExpertGroupKey>(this.GetPrimaryKeyString());

    public async Task<ShardInfo> EnsureLoaded()
    {
        var key = Key;
        Volatile.Write(ref _lastCall, Stopwatch.GetTimestamp());
        var range = model.ExpertGroups[key.Group];
        var stage = model.Stages[key.Stage];
        if (_weights is null)
        {
            var clock = Stopwatch.StartNew();
            _handedOver = loader.HasPreloaded(key);
            if (_handedOver) LogTookOver(key.ToString(), model.Silo.Name);
            else LogLoading(key.ToString(), range.ToString(), model.Silo.Name);
            _weights = await loader.TakeOrLoadAsync<ExpertGroupWeights>(key);
            loader.Hosting(key);
            if (dataPlane.Enabled) _callee = dataPlane.Register(key.ToString(), Compute, Compute);
            _loadSeconds = clock.Elapsed.TotalSeconds;
            LogLoaded(key.ToString(), _loadSeconds);
        }
        return new ShardInfo(key.ToString(), model.Silo.Name, $"experts {range} of {stage}", _loadSeconds, _calls);
    }

    public async Task<TensorPayload> Run(int layer, TensorPayload x, TensorPayload expertIds, TensorPayload weights,
        CancellationToken cancellationToken = default)
    {
        await EnsureLoaded();
        cancellationToken.ThrowIfCancellationRequested();
        return Compute(layer, x, expertIds, weights, default);
    }

    public async Task<ExpertEndpoint?> DataPlane()
    {
        await EnsureLoaded();
        return _callee is null ? null : dataPlane.Endpoint;
    }

    /// <summary>
    /// One call, from the grain (<see cref="Run"/>) or the silo's data plane, which calls it off the grain's scheduler:
    /// one at a time, counted alike, traced under <paramref name="parent"/> when the caller's context came with it.
    /// </summary>
    TensorPayload Compute(int layer, TensorPayload x, TensorPayload expertIds, TensorPayload weights, ActivityContext parent)
    {
        using var xs = x.ToTensor(model.Device);
        using var ids = expertIds.ToTensor(model.Device);
        using var w = weights.ToTensor(model.Device);
        using var output = Compute(layer, xs, ids, w, parent);
        // Through the copy to the host, which on a GPU waits for the kernels queued by the compute.
        return output.ToPayload();
    }

    /// <summary>As the payload call, on tensors (a stage on this silo, through the data plane): the output is new, the caller's to dispose.</summary>
    TorchSharp.torch.Tensor Compute(int layer, TorchSharp.torch.Tensor xs, TorchSharp.torch.Tensor ids, TorchSharp.torch.Tensor w, ActivityContext parent)
    {
        lock (_computing)
        {
            var key = Key;
            _calls++;
            Volatile.Write(ref _lastCall, Stopwatch.GetTimestamp());
            if (!_weights!.Layers.TryGetValue(layer, out var group))
                throw new ArgumentOutOfRangeException(nameof(layer), $"Expert group {key} holds no experts of layer {layer}.");
            using var activity = parent != default ? EngineMetrics.ActivitySource.StartActivity("qwen3.experts", ActivityKind.Internal, parent)
                : Activity.Current is { Recorded: true } ? EngineMetrics.ActivitySource.StartActivity("qwen3.experts") : null;
            activity?.SetTag("qwen3.expert_group", key.ToString());
            activity?.SetTag("qwen3.silo", model.Silo.Name);
            activity?.SetTag("qwen3.layer", layer);
            var range = model.ExpertGroups[key.Group];
            using (var hostIds = ids.cpu())
                _routed += ShardMetrics.Record(key, layer, range, hostIds.data<long>().ToArray(), telemetry.Value.ExpertDetail);
            long started = Stopwatch.GetTimestamp();
            var output = group.Forward(xs, ids, w);
            // On a GPU this is the host's part (kernels queued may still run); the payload call's copy to the host waits for them.
            ShardMetrics.ComputeSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
            return output;
        }
    }

    /// <summary>An activation that a hand-over brought here starts with the weights this silo preloaded for it.</summary>
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (Key.Copy > 0)
        {
            var idle = TimeSpan.FromSeconds(hotExperts.Value.IdleSeconds);
            this.RegisterGrainTimer(() =>
            {
                if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastCall)) < idle) return Task.CompletedTask;
                LogIdle(Key.ToString(), idle.TotalSeconds);
                DeactivateOnIdle();
                return Task.CompletedTask;
            }, idle / 2, idle / 2);
        }
        if (loader.HasPreloaded(Key)) await EnsureLoaded();
    }

    public Task<ShardHost> Host()
    {
        loader.Asked();
        return Task.FromResult(new ShardHost(model.Silo.Name, _weights is not null, _calls, _routed, HandedOver: _handedOver));
    }

    public Task HandOver()
    {
        loader.Asked();
        MigrateOnIdle();
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_weights is not null) loader.Released(Key);
        // Waits for a data-plane call in progress; later ones find the group gone and call the grain, wherever it is next.
        _callee?.Dispose();
        _callee = null;
        _weights?.Dispose();
        _weights = null;
        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert group copy {Key}: no calls for {Seconds:F0}s, unloading")]
    partial void LogIdle(string key, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert group {Key}: loading {Range} on silo {Silo}")]
    partial void LogLoading(string key, string range, string silo);

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert group {Key}: handed over to silo {Silo}, with the weights it preloaded")]
    partial void LogTookOver(string key, string silo);

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert group {Key}: loaded in {Seconds:F1}s")]
    partial void LogLoaded(string key, double seconds);
}
