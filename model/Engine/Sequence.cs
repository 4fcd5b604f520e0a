using System.Threading.Channels;
using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Model.Engine;

/// <summary>Where a sequence is in the scheduler.</summary>
public enum SequenceStatus
{
    /// <summary>Queued, or preempted and queued again: holds no blocks.</summary>
    Waiting,
    /// <summary>Being prefilled or decoded.</summary>
    Running,
    /// <summary>Answered; writing its last token into the cache, which is then parked for its session's next turn.</summary>
    Parking,
    /// <summary>Out of the scheduler: its blocks are freed or parked.</summary>
    Finished,
}

/// <summary>
/// One request in flight: its tokens (prompt, then output), how many of them the KV cache holds, its block
/// table, its sampling state and the channel its updates go out on.
/// </summary>
public sealed class Sequence : IDisposable
{
    readonly List<int> _tokens;
    int? _cachedAtAdmission;

    public long Id { get; }
    public GenerationRequest Request { get; }
    public SamplingParams Sampling => Request.Sampling;
    public int PromptLength { get; }
    public IReadOnlyList<int> Tokens => _tokens;
    public int OutputLength => _tokens.Count - PromptLength;
    /// <summary>Tokens whose keys and values are in the KV cache.</summary>
    public int NumComputed { get; set; }
    /// <summary>Prompt tokens the cache held when this sequence was first admitted (reused, not recomputed): what usage reports.</summary>
    public int CachedPromptTokens => _cachedAtAdmission ?? 0;
    public List<int> BlockTable { get; } = [];
    /// <summary>Hashes of this sequence's full blocks, as far as they have been needed.</summary>
    public List<BlockHash> BlockHashes { get; } = [];
    /// <summary>How many leading blocks of the table have been offered to the prefix cache.</summary>
    public int RegisteredBlocks { get; set; }
    public SequenceStatus Status { get; set; } = SequenceStatus.Waiting;
    public SamplerState SamplerState { get; }
    public IIncrementalTextDecoder? Decoder { get; }
    public StopStringFilter StopFilter { get; }
    /// <summary>Where the output is in its request's constraint, or null when it has none.</summary>
    public ConstraintState? Constraint { get; }
    public Channel<GenerationUpdate> Updates { get; } =
        Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    public string? FinishReason { get; set; }
    /// <summary>When the request reached its engine (a <see cref="System.Diagnostics.Stopwatch"/> timestamp).</summary>
    public long ArrivedAt { get; } = System.Diagnostics.Stopwatch.GetTimestamp();
    /// <summary>The trace context the request came in with (its gateway's span, carried by the grain call), or default.</summary>
    public System.Diagnostics.ActivityContext TraceContext { get; } = System.Diagnostics.Activity.Current?.Context ?? default;

    public Sequence(long id, GenerationRequest request, IIncrementalTextDecoder? decoder, ConstraintState? constraint = null)
    {
        Constraint = constraint;
        Id = id;
        Request = request;
        _tokens = [.. request.PromptTokens];
        PromptLength = _tokens.Count;
        SamplerState = new SamplerState(request.Sampling.Seed, request.PromptTokens);
        Decoder = decoder;
        StopFilter = new StopStringFilter(request.Sampling.Stop);
    }

    /// <summary>Tokens still to be run through the model before the next sample.</summary>
    public int PendingTokens => _tokens.Count - NumComputed;

    /// <summary>Admitted with <see cref="NumComputed"/> tokens already cached; only the first admission counts for usage.</summary>
    public void RecordAdmission()
    {
        if (_cachedAtAdmission is not null) return;
        _cachedAtAdmission = Math.Min(NumComputed, PromptLength);
        EngineMetrics.Admitted(this);
    }

    public void Append(int token)
    {
        _tokens.Add(token);
        SamplerState.Append(token);
        Constraint?.Advance(token);
    }

    public void Dispose() => SamplerState.Dispose();
}
