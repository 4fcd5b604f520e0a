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
/// updates back. Reentrant, so streams, new requests and the loop interleave on the activation's one thread.
/// </summary>
[Reentrant, PlannedPlacement, CollectionAgeLimit(AlwaysActive = true)]
public sealed partial class ReplicaGrain(ModelDeployment model, ILogger<ReplicaGrain> logger) : Grain, IReplicaGrain
{
    GenerationEngine _engine = null!;
    ClusterExecutor _executor = null!;

    ReplicaKey Key => ModelGrainKey.Parse<ReplicaKey>(this.GetPrimaryKeyString());

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        var key = Key;
        var stages = Enumerable.Range(0, model.Options.Stages).Select(s => GrainFactory.GetStage(key.Stage(s))).ToArray();
        _executor = new ClusterExecutor(stages, model.Device);
        // The tokenizer takes a second to build: off the activation's thread.
        var (tokenizer, vocabulary) = await Task.Run(() => (model.Tokenizer, model.Vocabulary), cancellationToken);
        var decoders = tokenizer is null ? null : new DetokenizerFactory(tokenizer, skipSpecialTokens: true);
        // Started here, the loop runs on this activation's scheduler, interleaved with its calls.
        _engine = GenerationEngine.Start(_executor, model.Scheduler, model.Generation.EosTokenIds, decoders, name: key.ToString(), vocabulary);
    }

    public async Task<ModelDescription> Warmup()
    {
        var key = Key;
        var loads = new List<Task<ShardInfo>>();
        for (int s = 0; s < model.Options.Stages; s++)
        {
            loads.Add(GrainFactory.GetStage(key.Stage(s)).EnsureLoaded());
            if (model.Stages[s].SparseLayers(model.Config).Any())
            {
                for (int g = 0; g < model.ExpertGroups.Length; g++)
                    loads.Add(GrainFactory.GetExpertGroup(key.Stage(s).ExpertGroup(g)).EnsureLoaded());
            }
        }
        foreach (var shard in await Task.WhenAll(loads)) LogShard(shard.Key, shard.SiloName, shard.Description);
        return model.Describe();
    }

    public async IAsyncEnumerable<GenerationUpdate> Generate(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var updates = _engine.GenerateAsync(request, cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            GenerationUpdate? next;
            try
            {
                next = await updates.MoveNextAsync() ? updates.Current : null;
            }
            catch (RequestError e)
            {
                next = GenerationUpdate.Failed(e);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogFailed(Key.ToString(), e);
                next = GenerationUpdate.Failed(ClusterFaults.AsRequestError(e)
                    ?? new RequestError(ErrorKind.Unavailable, null, $"generation failed: {e.Message}"));
            }
            if (next is null) yield break;
            yield return next;
            if (next.Error is not null) yield break;
        }
    }

    public Task DropCache(string key)
    {
        _engine.DropParked(key);
        return Task.CompletedTask;
    }

    public Task<ReplicaStats> Stats() => Task.FromResult(new ReplicaStats(_engine.Options.NumBlocks, _engine.UsedBlocks,
        _engine.ActiveSequences, _engine.Steps, _executor.StageCalls, _executor.ExpertCalls, [.. _engine.ParkedKeys], _engine.Preemptions,
        model.Silo.Name));

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken) =>
        await _engine.DisposeAsync();

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Key}: a generation failed")]
    partial void LogFailed(string key, Exception error);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Key} on silo {Silo}: {Description}")]
    partial void LogShard(string key, string silo, string description);
}
