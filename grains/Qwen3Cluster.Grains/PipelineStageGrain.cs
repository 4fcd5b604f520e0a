using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using System.Collections.Concurrent;
using Qwen3Cluster.Grains.DataPlane;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;
using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;

namespace Qwen3Cluster.Grains;

/// <summary>
/// Decoder layers [Start, End) of one replica, pinned to its planned silo: it loads only its layers (and the
/// embedding / final norm + LM head at the ends) and keeps their KV blocks in its pool. Its sparse layers'
/// experts are reached through the stage's expert-group grains, one call per group per layer per step. Every
/// <see cref="HotExpertOptions.WindowSeconds"/> it reads how its tokens were routed (<see cref="HotGroupPolicy"/>):
/// a hot group's copies are loaded on other silos first, then share its tokens; a copy whose call fails is left out
/// until the next window, and the step is retried on the copies left.
/// </summary>
[PlannedPlacement, CollectionAgeLimit(AlwaysActive = true)]
public sealed partial class PipelineStageGrain(
    ModelDeployment model,
    ShardLoader loader,
    ClusterPlan plan,
    IClusterMembershipService membership,
    ISiloMetadataCache metadata,
    ExpertDataPlane dataPlane,
    ExpertDataPlaneClient dataClient,
    IOptions<HotExpertOptions> hotExperts,
    ILogger<PipelineStageGrain> logger)
    : Grain, IPipelineStageGrain
{
    ModelStage? _stage;
    KvCachePool? _pool;
    PartitionedExperts? _experts;
    HotGroupPolicy? _policy;
    long[] _routedBefore = [];
    // Per expert group: copies serving its tokens now (loaded), and whether more are being loaded.
    int[] _copies = [];
    bool[] _warming = [];
    int _expertCalls;
    // Where each expert group (copy) takes data-plane calls, as its grain last said (null: through the grain only).
    readonly ConcurrentDictionary<ExpertGroupKey, ExpertEndpoint?> _routes = new();
    // The dispatch's data-plane calls not yet sent, one frame per expert silo.
    ExpertCallBatch _unsent = null!;
    // The payloads of the dispatch's last call, for the next call on the same tensors: each group's share of a step
    // whose every token it takes (every decode step's at one stream) is the step's own x, ids and weights, copied
    // once instead of once a group. Forgotten as the dispatch is sent, so no later layer's tensors are mistaken for them.
    (TorchSharp.torch.Tensor X, TorchSharp.torch.Tensor Ids, TorchSharp.torch.Tensor Weights,
        (TensorPayload X, TensorPayload Ids, TensorPayload Weights) Payloads)? _lastPayloads;
    // The arrays this stage's outputs are written into, by length: the replica has read an output before it sends the
    // next step (TensorPayloads.ToPayload), so each is reused instead of a new large object every step.
    readonly Dictionary<long, byte[]> _outputs = [];
    long _calls;
    double _loadSeconds;
    bool _handedOver;

    StageKey? _key;
    StageKey Key => _key ??= ModelGrainKey.Parse<StageKey>(this.GetPrimaryKeyString());

    /// <summary>
    /// An expert group copy as this stage calls it: its key, its name on the data plane and its grain reference, made
    /// once per activation. Making a grain reference resolves the interface's grain type by reflection: made on every
    /// call, these cost a quarter of a millisecond of each bench-moe decode step on the serving thread.
    /// </summary>
    sealed record GroupCallee(ExpertGroupKey Key, string Name, IExpertGroupGrain Grain);
    readonly ConcurrentDictionary<(int Group, int Copy), GroupCallee> _callees = new();

    GroupCallee Callee(int group, int copy)
    {
        if (_callees.TryGetValue((group, copy), out var callee)) return callee;
        var key = Key.ExpertGroup(group).WithCopy(copy);
        return _callees[(group, copy)] = new GroupCallee(key, key.ToString(), GrainFactory.GetExpertGroup(key));
    }

    public async Task<ShardInfo> EnsureLoaded()
    {
        if (_stage is null)
        {
            var range = model.Stages[Key.Stage];
            var clock = Stopwatch.StartNew();
            _handedOver = loader.HasPreloaded(Key);
            if (_handedOver) LogTookOver(Key.ToString(), model.Silo.Name);
            else LogLoading(Key.ToString(), range.ToString(), model.Silo.Name);
            _stage = await loader.TakeOrLoadAsync<ModelStage>(Key);
            loader.Hosting(Key);
            _pool = _stage.CreatePool(model.Options.KvBlocks, model.Options.BlockSize);
            int groups = model.ExpertGroups.Length;
            _copies = new int[groups];
            _warming = new bool[groups];
            _unsent = new ExpertCallBatch(dataClient);
            _experts = new PartitionedExperts(model.ExpertGroups, StartExpertGroupCallAsync, g => 1 + _copies[g]);
            _loadSeconds = clock.Elapsed.TotalSeconds;
            LogLoaded(Key.ToString(), _loadSeconds);
            var hot = hotExperts.Value;
            if (hot.MaxCopies > 0 && groups > 1 && model.Stages[Key.Stage].SparseLayers(model.Config).Any())
            {
                _policy = new HotGroupPolicy(hot, groups);
                _routedBefore = new long[groups];
                var window = TimeSpan.FromSeconds(hot.WindowSeconds);
                this.RegisterGrainTimer(ReviewHotGroups, window, window);
            }
        }
        return new ShardInfo(Key.ToString(), model.Silo.Name, _stage.Range.ToString(), _loadSeconds, _calls);
    }

    public async Task<StageResult> Forward(StageStep step, CancellationToken cancellationToken = default)
    {
        await EnsureLoaded();
        _calls++;
        if (step.ExpectedPoolGeneration != Guid.Empty && step.ExpectedPoolGeneration != _pool!.Generation)
            return new StageResult(null, _pool.Generation, 0);
        step.Context.Validate();
        // A child of the step's span when the step is traced (its context comes with the grain call).
        // Only under a span that is recorded (a sampled step): Orleans gives every grain call an activity that carries
        // the context on, and spans under one that is not recorded would only cost (the sampler drops them anyway).
        using var activity = Activity.Current is { Recorded: true } ? EngineMetrics.ActivitySource.StartActivity("qwen3.stage") : null;
        activity?.SetTag("qwen3.stage", Key.ToString());
        activity?.SetTag("qwen3.silo", model.Silo.Name);
        activity?.SetTag("qwen3.tokens", step.Context.TokenCount);
        _expertCalls = 0;
        using var input = step.Input.ToTensor(model.Device);
        using var output = await _stage!.ForwardAsync(input, step.Context, _pool!, _experts!, cancellationToken);
        return new StageResult(output.ToPayload(_outputs), _pool!.Generation, _expertCalls);
    }

    async ValueTask<ExpertGroupOutput> StartExpertGroupCallAsync(int group, int copy, int layer, TorchSharp.torch.Tensor x,
        TorchSharp.torch.Tensor ids, TorchSharp.torch.Tensor weights, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _expertCalls);
        var callee = Callee(group, copy);
        var key = callee.Key;
        long started = Stopwatch.GetTimestamp();
        try
        {
            var reply = await StartCallAsync(callee, layer, x, ids, weights, cancellationToken);
            return async () =>
            {
                try
                {
                    // The first output asked for sends the dispatch's data-plane calls, before anything waits or computes here.
                    _lastPayloads = null;
                    await _unsent.SendAsync(cancellationToken);
                    var (output, transport) = await reply();
                    ShardMetrics.CallSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, new KeyValuePair<string, object?>("transport", transport));
                    return output;
                }
                catch (Exception e) when (copy > 0 && !cancellationToken.IsCancellationRequested)
                {
                    CopyFailed(group, copy, key, e);
                    throw;
                }
            };
        }
        catch (Exception e) when (copy > 0 && !cancellationToken.IsCancellationRequested)
        {
            CopyFailed(group, copy, key, e);
            throw;
        }
    }

    /// <summary>The step fails and is retried (its caches recomputed); from now on without this copy or those after it.</summary>
    void CopyFailed(int group, int copy, ExpertGroupKey key, Exception error)
    {
        _copies[group] = Math.Min(_copies[group], copy - 1);
        LogCopyFailed(error, key.ToString());
    }

    /// <summary>
    /// Starts one call to an expert group; what it returns waits for the output and says how the call went (the
    /// <c>transport</c> of <see cref="ShardMetrics.CallSeconds"/>). A group hosted on this silo runs in place, on the
    /// tensors themselves, when its output is asked for ("in-process"); one on a silo with a data plane joins that
    /// silo's frame of the dispatch, sent when the first output is asked for ("socket"); else, or when the group is
    /// no longer where it was, the call goes through its grain ("grain"), which Orleans routes wherever the group is
    /// now. Only the calls that leave the process copy the tensors into payloads (those in place made most of a
    /// serving silo's allocations).
    /// </summary>
    async ValueTask<Func<ValueTask<(TorchSharp.torch.Tensor Output, string Transport)>>> StartCallAsync(GroupCallee callee, int layer,
        TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor ids, TorchSharp.torch.Tensor weights, CancellationToken cancellationToken)
    {
        var (key, name, grain) = callee;
        (TensorPayload X, TensorPayload Ids, TensorPayload Weights)? payloads = null;
        (TensorPayload X, TensorPayload Ids, TensorPayload Weights) Payloads()
        {
            if (payloads is { } made) return made;
            if (_lastPayloads is { } last && ReferenceEquals(last.X, x) && ReferenceEquals(last.Ids, ids) && ReferenceEquals(last.Weights, weights))
                return (payloads = last.Payloads).Value;
            payloads = (x.ToPayload(), ids.ToPayload(), weights.ToPayload());
            _lastPayloads = (x, ids, weights, payloads.Value);
            return payloads.Value;
        }
        Func<ValueTask<(TorchSharp.torch.Tensor, string)>> ThroughGrain()
        {
            var (px, pids, pweights) = Payloads();
            var call = grain.Run(layer, px, pids, pweights, cancellationToken);
            return async () => ((await call).ToTensor(model.Device), "grain");
        }
        if (!dataPlane.Enabled) return ThroughGrain();

        if (dataPlane.Hosts(name))
        {
            return () => dataPlane.TryRun(name, layer, x, ids, weights, out var local)
                ? new((local!, "in-process"))
                : ThroughGrain()();
        }
        if (!_routes.TryGetValue(key, out var endpoint)) _routes[key] = endpoint = await grain.DataPlane();
        if (endpoint is null || endpoint.Silo == dataPlane.Silo) return ThroughGrain();
        var (sx, sids, sweights) = Payloads();
        var call = _unsent.Add(endpoint, name, layer, sx, sids, sweights, Activity.Current is { Recorded: true } traced ? traced.Id ?? "" : "");
        return async () =>
        {
            try
            {
                return ((await call.OutputAsync(cancellationToken)).ToTensor(model.Device), "socket");
            }
            catch (ExpertDataPlaneUnavailableException e) when (!cancellationToken.IsCancellationRequested)
            {
                Missed(key, e);
                return await ThroughGrain()();
            }
        };
    }

    /// <summary>The group was not where its grain said (or its silo did not answer): asked again on the next call.</summary>
    void Missed(ExpertGroupKey key, ExpertDataPlaneUnavailableException error)
    {
        _routes.TryRemove(key, out _);
        LogDataPlaneMissed(key.ToString(), error.Message);
    }

    /// <summary>One window's routing: drops the copies of groups that cooled down and starts loading those hot groups earn.</summary>
    Task ReviewHotGroups()
    {
        var routed = _experts!.Routed;
        var window = new long[routed.Count];
        for (int g = 0; g < window.Length; g++)
        {
            window[g] = routed[g] - _routedBefore[g];
            _routedBefore[g] = routed[g];
        }
        var wanted = _policy!.Observe(window);
        List<SiloDescriptor>? present = null;
        for (int g = 0; g < wanted.Count; g++)
        {
            if (wanted[g] < _copies[g])
            {
                LogCopiesDropped(Key.ExpertGroup(g).ToString(), _copies[g], wanted[g]);
                _copies[g] = wanted[g];
            }
            else if (wanted[g] > _copies[g] && !_warming[g])
            {
                present ??= PlannedPlacementDirector.Present(membership, metadata).Select(p => p.Silo).ToList();
                int target = _copies[g];
                while (target < wanted[g] && plan.SiloFor(Key.ExpertGroup(g).WithCopy(target + 1), present) is not null) target++;
                if (target == _copies[g]) continue;
                double share = window.Sum() == 0 ? 0 : (double)window[g] / window.Sum();
                LogGroupHot(Key.ExpertGroup(g).ToString(), share, target);
                _warming[g] = true;
                _ = WarmCopiesAsync(g, target);
            }
        }
        return Task.CompletedTask;
    }

    /// <summary>Loads copies [current + 1, target] of a hot group, then lets them share its tokens.</summary>
    async Task WarmCopiesAsync(int group, int target)
    {
        try
        {
            for (int copy = _copies[group] + 1; copy <= target; copy++)
            {
                var info = await GrainFactory.GetExpertGroup(Key.ExpertGroup(group).WithCopy(copy)).EnsureLoaded();
                // Meanwhile the group may have cooled down, or a copy before this one failed.
                if (_policy!.Wanted[group] < copy || _copies[group] != copy - 1) break;
                _copies[group] = copy;
                LogCopyServing(info.Key, info.SiloName);
            }
        }
        catch (Exception e)
        {
            LogCopyFailed(e, Key.ExpertGroup(group).ToString());
        }
        finally
        {
            _warming[group] = false;
        }
    }

    /// <summary>An activation that a hand-over brought here starts with the weights this silo preloaded for it.</summary>
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (loader.HasPreloaded(Key)) await EnsureLoaded();
    }

    public Task<ShardHost> Host()
    {
        loader.Asked();
        return Task.FromResult(new ShardHost(model.Silo.Name, _stage is not null, _calls, Copies: _copies.ToArray(), HandedOver: _handedOver));
    }

    /// <summary>Moves once idle (between steps); its KV pool stays behind, so the replica recomputes its caches.</summary>
    public Task HandOver()
    {
        loader.Asked();
        MigrateOnIdle();
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_stage is not null) loader.Released(Key);
        _pool?.Dispose();
        _stage?.Dispose();
        _pool = null;
        _stage = null;
        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert group {Key} is hot ({Share:P0} of the stage's routed tokens): {Copies} copies")]
    partial void LogGroupHot(string key, double share, int copies);

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert group copy {Key} on silo {Silo} now shares its group's tokens")]
    partial void LogCopyServing(string key, string silo);

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert group {Key} cooled down: {From} -> {To} copies")]
    partial void LogCopiesDropped(string key, int from, int to);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Expert group copy {Key} failed; its group goes on without it")]
    partial void LogCopyFailed(Exception error, string key);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Expert group {Key}: called through its grain this time ({Reason})")]
    partial void LogDataPlaneMissed(string key, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stage {Key}: loading {Range} on silo {Silo}")]
    partial void LogLoading(string key, string range, string silo);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stage {Key}: handed over to silo {Silo}, with the weights it preloaded")]
    partial void LogTookOver(string key, string silo);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stage {Key}: loaded in {Seconds:F1}s")]
    partial void LogLoaded(string key, double seconds);
}
