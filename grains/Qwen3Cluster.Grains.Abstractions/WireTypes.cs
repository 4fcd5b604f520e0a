using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Grains;

/// <summary>
/// One step for one stage: the step's metadata, its input (token ids [T] for stage 0, hidden states [T, D]
/// after), and the pool generation the replica's bookkeeping describes (empty: any pool).
/// </summary>
[GenerateSerializer, Immutable, Alias("qwen3.StageStep")]
public sealed record StageStep(
    [property: Id(0)] ForwardContext Context,
    [property: Id(1)] TensorPayload Input,
    [property: Id(2)] Guid ExpectedPoolGeneration);

/// <summary>A stage's answer: its output, or null when its pool is not the expected one (its cache was lost).</summary>
[GenerateSerializer, Immutable, Alias("qwen3.StageResult")]
public sealed record StageResult([property: Id(0)] TensorPayload? Output, [property: Id(1)] Guid PoolGeneration,
    [property: Id(2)] int ExpertCalls);

/// <summary>What a stage or expert-group grain holds, for placement checks and readiness.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.ShardInfo")]
public sealed record ShardInfo(
    [property: Id(0)] string Key,
    [property: Id(1)] string SiloName,
    [property: Id(2)] string Description,
    [property: Id(3)] double LoadSeconds,
    [property: Id(4)] long Calls);

/// <summary>
/// Where a stage or expert-group activation runs, and what it has done since it was activated: for an expert group
/// the (token, expert) assignments routed to it, for a stage how many copies of each of its expert groups serve now.
/// HandedOver: this activation took weights its silo loaded ahead of a hand-over, rather than loading on a call.
/// </summary>
[GenerateSerializer, Immutable, Alias("qwen3.ShardHost")]
public sealed record ShardHost(
    [property: Id(0)] string SiloName,
    [property: Id(1)] bool Loaded,
    [property: Id(2)] long Calls = 0,
    [property: Id(3)] long RoutedTokens = 0,
    [property: Id(4)] int[]? Copies = null,
    [property: Id(5)] bool HandedOver = false);

/// <summary>
/// Where an expert-group activation takes calls over the experts' data plane: its silo's address and data port, and
/// the silo (<c>SiloAddress.ToParsableString()</c>), so a caller can tell its own silo and drop a dead one's connections.
/// </summary>
[GenerateSerializer, Immutable, Alias("qwen3.ExpertEndpoint")]
public sealed record ExpertEndpoint([property: Id(0)] string Host, [property: Id(1)] int Port, [property: Id(2)] string Silo);

/// <summary>A model replica as its replica grain describes it.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.ModelDescription")]
public sealed record ModelDescription(
    [property: Id(0)] string Name,
    [property: Id(1)] string Architecture,
    [property: Id(2)] int ContextLength,
    [property: Id(3)] int VocabSize,
    [property: Id(4)] int Stages,
    [property: Id(5)] int ExpertGroups);

/// <summary>The KV pool and loop counters of a model replica.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.ReplicaStats")]
public sealed record ReplicaStats(
    [property: Id(0)] int TotalBlocks,
    [property: Id(1)] int UsedBlocks,
    [property: Id(2)] int ActiveSequences,
    [property: Id(3)] long Steps,
    [property: Id(4)] long StageCalls,
    [property: Id(5)] long ExpertCalls,
    [property: Id(6)] string[] ParkedCaches,
    [property: Id(7)] long Preemptions,
    [property: Id(8)] string SiloName = "");

/// <summary>A session's public state.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.SessionInfo")]
public sealed record SessionInfo(
    [property: Id(0)] string SessionId,
    [property: Id(1)] string Model,
    [property: Id(2)] int HistoryTokens,
    [property: Id(3)] int Turns,
    [property: Id(4)] int TtlSeconds,
    [property: Id(5)] DateTimeOffset ExpiresAt);

[GenerateSerializer, Alias("qwen3.TurnStatus")]
public enum TurnStatus { Started, NotFound, Busy }

/// <summary>A turn begun on a session: the history to extend and the number that ends the turn.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.TurnTicket")]
public sealed record TurnTicket(
    [property: Id(0)] TurnStatus Status,
    [property: Id(1)] int Turn,
    [property: Id(2)] int[] History,
    [property: Id(3)] string Model,
    [property: Id(4)] string CacheKey,
    [property: Id(5)] int Replica);
