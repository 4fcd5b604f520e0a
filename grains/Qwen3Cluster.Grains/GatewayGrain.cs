using Orleans.Concurrency;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Grains;

/// <summary>
/// A model replica's continuous batching: every request joins the replica's one decode loop, which runs all
/// active sequences through the stage grains together each step, samples, applies stop rules and streams token
/// events back. Reentrant, so streams, new requests and the loop interleave on the activation's one thread.
/// </summary>
[Reentrant, PlannedPlacement, CollectionAgeLimit(AlwaysActive = true)]
public sealed partial class GatewayGrain(ModelStore store, ILogger<GatewayGrain> logger) : Grain, IGatewayGrain
{
    GenerationEngine? _engine;
    ClusterExecutor? _executor;

    string Key => this.GetPrimaryKeyString();

    GenerationEngine Engine
    {
        get
        {
            if (_engine is not null) return _engine;
            var (_, model, replica, _, _) = GrainKeys.Parse(Key);
            var stages = Enumerable.Range(0, store.Options.Stages)
                .Select(s => GrainFactory.GetGrain<IPipelineStageGrain>(GrainKeys.Stage(model, replica, s)))
                .ToArray();
            _executor = new ClusterExecutor(stages, store.Device);
            var decoders = store.Tokenizer is { } tokenizer ? new DetokenizerFactory(tokenizer, skipSpecialTokens: true) : null;
            _engine = new GenerationEngine(_executor, store.Scheduler, store.Config.VocabSize, store.Generation.EosTokenIds, decoders);
            _engine.Start();
            return _engine;
        }
    }

    public async Task<ModelDescription> Warmup()
    {
        var (_, model, replica, _, _) = GrainKeys.Parse(Key);
        var loads = new List<Task<ShardInfo>>();
        for (int s = 0; s < store.Options.Stages; s++)
        {
            loads.Add(GrainFactory.GetGrain<IPipelineStageGrain>(GrainKeys.Stage(model, replica, s)).EnsureLoaded());
            if (store.Stages[s].SparseLayers(store.Config).Any())
                for (int g = 0; g < store.ExpertGroups.Length; g++)
                    loads.Add(GrainFactory.GetGrain<IExpertGroupGrain>(GrainKeys.ExpertGroup(model, s, g)).EnsureLoaded());
        }
        // The tokenizer takes a second to build: off the activation's thread, before the first request needs it.
        var tokenizer = Task.Run(() => store.Tokenizer);
        foreach (var shard in await Task.WhenAll(loads)) LogShard(shard.Key, shard.SiloName, shard.Description);
        await tokenizer;
        _ = Engine;
        return store.Describe();
    }

    public Task<ModelDescription> Describe() => Task.FromResult(store.Describe());

    public async IAsyncEnumerable<GenerationEvent> Generate(GenerateCommand command,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = new GenerationRequest(command.PromptTokens, command.Sampling.ToParams())
        {
            ParkAs = command.ParkAs,
            ResumeFrom = command.ResumeFrom,
        };
        var engine = Engine;
        ErrorWire? refused = null;
        try
        {
            engine.Validate(request);
        }
        catch (InvalidRequestException e)
        {
            refused = new ErrorWire(ErrorKind.InvalidArgument, e.Field, e.Reason);
        }
        if (refused is not null)
        {
            yield return new GenerationEvent([], "", null, null, refused);
            yield break;
        }
        await using var updates = engine.GenerateAsync(request, cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            GenerationEvent? next;
            try
            {
                next = await updates.MoveNextAsync() ? updates.Current.ToEvent() : null;
            }
            catch (CapacityExceededException e)
            {
                next = new GenerationEvent([], "", null, null, new ErrorWire(ErrorKind.ResourceExhausted, "prompt", e.Message));
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogFailed(Key, e);
                next = new GenerationEvent([], "", null, null, new ErrorWire(ErrorKind.Unavailable, null, $"generation failed: {e.Message}"));
            }
            if (next is null) yield break;
            yield return next;
            if (next.Error is not null) yield break;
        }
    }

    public Task DropCache(string key)
    {
        _engine?.DropParked(key);
        return Task.CompletedTask;
    }

    public Task<ReplicaStats> Stats()
    {
        var engine = Engine;
        return Task.FromResult(new ReplicaStats(engine.Options.NumBlocks, engine.UsedBlocks, engine.ActiveSequences, engine.Steps,
            _executor!.StageCalls, _executor.ExpertCalls, [.. engine.ParkedKeys], engine.Preemptions));
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_engine is not null) await _engine.DisposeAsync();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Key}: a generation failed")]
    partial void LogFailed(string key, Exception error);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Key} on silo {Silo}: {Description}")]
    partial void LogShard(string key, string silo, string description);
}
