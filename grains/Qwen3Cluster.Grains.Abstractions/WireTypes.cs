namespace Qwen3Cluster.Grains;

/// <summary>One sequence's slice of a step, as <c>Qwen3Cluster.Model.Engine.SequenceSlice</c> on the wire.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.SliceWire")]
public sealed record SliceWire([property: Id(0)] int StartPosition, [property: Id(1)] int QueryLength, [property: Id(2)] int[] BlockTable);

/// <summary>
/// One step for one stage: the step's metadata, its input (token ids [T] for stage 0, hidden states [T, D]
/// after), and the pool generation the gateway's bookkeeping describes (empty: any pool).
/// </summary>
[GenerateSerializer, Immutable, Alias("qwen3.StageStep")]
public sealed record StageStep(
    [property: Id(0)] SliceWire[] Slices,
    [property: Id(1)] int BlockSize,
    [property: Id(2)] int[] LogitRows,
    [property: Id(3)] TensorPayload Input,
    [property: Id(4)] Guid ExpectedPoolGeneration);

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

/// <summary>Sampling settings on the wire (see <c>Qwen3Cluster.Model.Sampling.SamplingParams</c>).</summary>
[GenerateSerializer, Immutable, Alias("qwen3.SamplingWire")]
public sealed record SamplingWire
{
    [Id(0)] public double Temperature { get; init; } = 1.0;
    [Id(1)] public double TopP { get; init; } = 1.0;
    [Id(2)] public int TopK { get; init; }
    [Id(3)] public double MinP { get; init; }
    [Id(4)] public double RepetitionPenalty { get; init; } = 1.0;
    [Id(5)] public double PresencePenalty { get; init; }
    [Id(6)] public double FrequencyPenalty { get; init; }
    [Id(7)] public ulong? Seed { get; init; }
    [Id(8)] public int MaxTokens { get; init; } = 256;
    [Id(9)] public string[] Stop { get; init; } = [];
    [Id(10)] public int[] StopTokenIds { get; init; } = [];
    [Id(11)] public bool IgnoreEos { get; init; }
    [Id(12)] public int Logprobs { get; init; }
}

/// <summary>A generation request to a model replica's gateway grain.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.GenerateCommand")]
public sealed record GenerateCommand(
    [property: Id(0)] int[] PromptTokens,
    [property: Id(1)] SamplingWire Sampling,
    [property: Id(2)] string? ParkAs = null,
    [property: Id(3)] string? ResumeFrom = null);

[GenerateSerializer, Immutable, Alias("qwen3.TopLogprobWire")]
public readonly record struct TopLogprobWire([property: Id(0)] int Id, [property: Id(1)] float Logprob);

[GenerateSerializer, Immutable, Alias("qwen3.TokenWire")]
public sealed record TokenWire(
    [property: Id(0)] int Id,
    [property: Id(1)] string Text,
    [property: Id(2)] float Logprob,
    [property: Id(3)] TopLogprobWire[] Top);

[GenerateSerializer, Immutable, Alias("qwen3.UsageWire")]
public sealed record UsageWire([property: Id(0)] int PromptTokens, [property: Id(1)] int CachedPromptTokens, [property: Id(2)] int CompletionTokens);

[GenerateSerializer, Alias("qwen3.ErrorKind")]
public enum ErrorKind { InvalidArgument, NotFound, PermissionDenied, FailedPrecondition, ResourceExhausted, Unavailable, Internal }

/// <summary>Why a request was refused or failed; <see cref="Field"/> names the request field at fault, if one is.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.ErrorWire")]
public sealed record ErrorWire([property: Id(0)] ErrorKind Kind, [property: Id(1)] string? Field, [property: Id(2)] string Message);

/// <summary>A streamed piece of a generation; the last one has FinishReason and Usage, or Error alone.</summary>
[GenerateSerializer, Immutable, Alias("qwen3.GenerationEvent")]
public sealed record GenerationEvent(
    [property: Id(0)] TokenWire[] Tokens,
    [property: Id(1)] string Text,
    [property: Id(2)] string? FinishReason,
    [property: Id(3)] UsageWire? Usage,
    [property: Id(4)] ErrorWire? Error);

/// <summary>A model replica as its gateway grain describes it.</summary>
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
    [property: Id(7)] long Preemptions);

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
