namespace Qwen3Cluster.Model.Engine;

/// <summary>Limits of one model replica's continuous batching.</summary>
public sealed record SchedulerOptions
{
    /// <summary>KV blocks in every stage's pool.</summary>
    public int NumBlocks { get; init; } = 2048;
    /// <summary>Tokens per KV block.</summary>
    public int BlockSize { get; init; } = 16;
    /// <summary>Tokens run through the model in one step (prefill chunks plus decode tokens).</summary>
    public int MaxBatchTokens { get; init; } = 512;
    /// <summary>Sequences decoded together in one step.</summary>
    public int MaxSequences { get; init; } = 64;
    /// <summary>Prompt plus output never exceeds this (the model's max_position_embeddings by default).</summary>
    public int MaxModelLength { get; init; } = 32768;
    /// <summary>
    /// Reuse the cached full blocks a new prompt begins with (vLLM's automatic prefix caching). Off, every prompt is
    /// computed from scratch except a session turn that resumes its parked cache: what reference runs compare with.
    /// </summary>
    public bool PrefixCaching { get; init; } = true;
    /// <summary>
    /// How long failing steps are retried (every cache recomputed from its sequence's tokens) before the requests
    /// fail: long enough for a cluster to declare a dead silo and re-place its grains.
    /// </summary>
    public TimeSpan RecoveryTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The context window actually served: the model's, or the KV pool's when that holds fewer tokens, so one
    /// sequence can always fit in the pool on its own (and never has to be preempted for lack of room forever).
    /// </summary>
    public int ContextWindow => (int)Math.Min(MaxModelLength, (long)NumBlocks * BlockSize);
}
