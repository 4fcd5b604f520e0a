using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Grains;

/// <summary>A grain that holds a share of the model's weights on its planned silo: a stage or an expert group.</summary>
[Alias("qwen3.IModelShardGrain")]
public interface IModelShardGrain : IGrainWithStringKey
{
    /// <summary>Loads the weights if not yet loaded (a long call the first time).</summary>
    [ResponseTimeout("00:30:00"), Alias("EnsureLoaded")]
    Task<ShardInfo> EnsureLoaded();

    /// <summary>The name of the silo this activation runs on, and whether its weights are loaded; loads nothing.</summary>
    [Alias("Host")]
    Task<ShardHost> Host();

    /// <summary>
    /// Moves to the silo the plan names now, once idle (Orleans migration: calls meanwhile wait and then reach
    /// the new activation). The new silo has loaded the weights first; this activation's are freed as it goes.
    /// </summary>
    [Alias("HandOver")]
    Task HandOver();
}

/// <summary>Decoder layers [Start, End) of one model replica, with their KV pool; key: a <see cref="StageKey"/>.</summary>
[Alias("qwen3.IPipelineStageGrain")]
public interface IPipelineStageGrain : IModelShardGrain
{

    /// <summary>Runs one batched step of every active sequence through this stage; cancelling abandons it between layers.</summary>
    [ResponseTimeout("00:30:00"), Alias("Forward")]
    Task<StageResult> Forward(StageStep step, CancellationToken cancellationToken = default);
}

/// <summary>Experts [Lo, Hi) of every sparse layer of a stage; key: an <see cref="ExpertGroupKey"/>.</summary>
[Alias("qwen3.IExpertGroupGrain")]
public interface IExpertGroupGrain : IModelShardGrain
{
    /// <summary>The weighted outputs [T, D] of this group's experts for tokens x [T, D] with ids and weights [T, K].</summary>
    [ResponseTimeout("00:30:00"), Alias("Run")]
    Task<TensorPayload> Run(int layer, TensorPayload x, TensorPayload expertIds, TensorPayload weights,
        CancellationToken cancellationToken = default);

    /// <summary>
    /// Loads the weights if not yet loaded, and says where this activation takes calls over its silo's data plane
    /// (a socket of its own, faster than <see cref="Run"/> through Orleans); null when its silo has none.
    /// </summary>
    [ResponseTimeout("00:30:00"), Alias("DataPlane")]
    Task<ExpertEndpoint?> DataPlane();
}

/// <summary>A model replica's scheduler and decode loop; key: a <see cref="ReplicaKey"/>.</summary>
[Alias("qwen3.IReplicaGrain")]
public interface IReplicaGrain : IGrainWithStringKey
{
    /// <summary>Places and loads every stage and expert group of the replica; true when all are ready.</summary>
    [ResponseTimeout("00:30:00"), Alias("Warmup")]
    Task<ModelDescription> Warmup();

    /// <summary>
    /// Streams a generation of a request its edge has checked; a failure ends the stream with an update carrying
    /// only the error. Cancelling the enumeration stops it within a step and frees its blocks.
    /// </summary>
    [Alias("Generate")]
    IAsyncEnumerable<GenerationUpdate> Generate(GenerationRequest request, CancellationToken cancellationToken = default);

    /// <summary>Frees a parked cache (a deleted or expired session).</summary>
    [Alias("DropCache")]
    Task DropCache(string key);

    [Alias("Stats")]
    Task<ReplicaStats> Stats();
}

/// <summary>A conversation's history and cache state; key: the session id.</summary>
[Alias("qwen3.ISessionGrain")]
public interface ISessionGrain : IGrainWithStringKey
{
    [Alias("Create")]
    Task<SessionInfo> Create(string owner, string model, int ttlSeconds);

    /// <summary>The session, or null when it does not exist or belongs to another owner.</summary>
    [Alias("Get")]
    Task<SessionInfo?> Get(string owner);

    /// <summary>Starts a turn; NotFound for a missing or foreign session, Busy while another turn runs.</summary>
    [Alias("BeginTurn")]
    Task<TurnTicket> BeginTurn(string owner);

    /// <summary>Ends a turn: the history becomes <paramref name="history"/> (the turn's prompt and reply).</summary>
    [Alias("EndTurn")]
    Task EndTurn(int turn, int[] history);

    /// <summary>Ends a turn that failed or was cancelled: the history stays as it was.</summary>
    [Alias("AbandonTurn")]
    Task AbandonTurn(int turn);

    /// <summary>Deletes the session and frees its cache; false when it does not exist for this owner.</summary>
    [Alias("Delete")]
    Task<bool> Delete(string owner);
}

/// <summary>The model's grains by their typed keys.</summary>
public static class ModelGrains
{
    public static IReplicaGrain GetReplica(this IGrainFactory grains, ReplicaKey key) => grains.GetGrain<IReplicaGrain>(key.ToString());

    public static IPipelineStageGrain GetStage(this IGrainFactory grains, StageKey key) => grains.GetGrain<IPipelineStageGrain>(key.ToString());

    public static IExpertGroupGrain GetExpertGroup(this IGrainFactory grains, ExpertGroupKey key) =>
        grains.GetGrain<IExpertGroupGrain>(key.ToString());
}
