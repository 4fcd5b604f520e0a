using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;
using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Layers;

namespace Qwen3Cluster.Grains;

/// <summary>
/// Decoder layers [Start, End) of one replica, pinned to its planned silo: it loads only its layers (and the
/// embedding / final norm + LM head at the ends) and keeps their KV blocks in its pool. Its sparse layers'
/// experts are reached through the stage's expert-group grains, one call per group per layer per step.
/// </summary>
[PlannedPlacement, CollectionAgeLimit(AlwaysActive = true)]
public sealed partial class PipelineStageGrain(ModelDeployment model, ShardLoader loader, ILogger<PipelineStageGrain> logger)
    : Grain, IPipelineStageGrain
{
    ModelStage? _stage;
    KvCachePool? _pool;
    PartitionedExperts? _experts;
    int _expertCalls;
    long _calls;
    double _loadSeconds;

    StageKey Key => ModelGrainKey.Parse<StageKey>(this.GetPrimaryKeyString());

    public async Task<ShardInfo> EnsureLoaded()
    {
        if (_stage is null)
        {
            var range = model.Stages[Key.Stage];
            var clock = Stopwatch.StartNew();
            bool preloaded = loader.HasPreloaded(Key);
            if (preloaded) LogTookOver(Key.ToString(), model.Silo.Name);
            else LogLoading(Key.ToString(), range.ToString(), model.Silo.Name);
            _stage = await loader.TakeOrLoadAsync<ModelStage>(Key);
            _pool = _stage.CreatePool(model.Options.KvBlocks, model.Options.BlockSize);
            _experts = new PartitionedExperts(model.ExpertGroups, RunExpertGroupAsync);
            _loadSeconds = clock.Elapsed.TotalSeconds;
            LogLoaded(Key.ToString(), _loadSeconds);
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
        _expertCalls = 0;
        using var input = step.Input.ToTensor(model.Device);
        using var output = await _stage!.ForwardAsync(input, step.Context, _pool!, _experts!, cancellationToken);
        return new StageResult(output.ToPayload(), _pool!.Generation, _expertCalls);
    }

    async ValueTask<TorchSharp.torch.Tensor> RunExpertGroupAsync(int group, int layer, TorchSharp.torch.Tensor x,
        TorchSharp.torch.Tensor ids, TorchSharp.torch.Tensor weights, CancellationToken cancellationToken)
    {
        _expertCalls++;
        var result = await GrainFactory.GetExpertGroup(Key.ExpertGroup(group))
            .Run(layer, x.ToPayload(), ids.ToPayload(), weights.ToPayload(), cancellationToken);
        return result.ToTensor(model.Device);
    }

    /// <summary>An activation that a hand-over brought here starts with the weights this silo preloaded for it.</summary>
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (loader.HasPreloaded(Key)) await EnsureLoaded();
    }

    public Task<ShardHost> Host() => Task.FromResult(new ShardHost(model.Silo.Name, _stage is not null, _calls));

    /// <summary>Moves once idle (between steps); its KV pool stays behind, so the replica recomputes its caches.</summary>
    public Task HandOver()
    {
        MigrateOnIdle();
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _pool?.Dispose();
        _stage?.Dispose();
        _pool = null;
        _stage = null;
        return Task.CompletedTask;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Stage {Key}: loading {Range} on silo {Silo}")]
    partial void LogLoading(string key, string range, string silo);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stage {Key}: handed over to silo {Silo}, with the weights it preloaded")]
    partial void LogTookOver(string key, string silo);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stage {Key}: loaded in {Seconds:F1}s")]
    partial void LogLoaded(string key, double seconds);
}
