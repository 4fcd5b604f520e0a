using System.Threading.Channels;
using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Model.Engine;

public enum SequenceStatus { Waiting, Running, Finished }

/// <summary>
/// One request in flight: its tokens (prompt, then output), how many of them the KV cache holds, its block
/// table, its sampling state and the channel its updates go out on.
/// </summary>
public sealed class Sequence : IDisposable
{
    readonly List<int> _tokens;

    public long Id { get; }
    public GenerationRequest Request { get; }
    public SamplingParams Sampling => Request.Sampling;
    public int PromptLength { get; }
    public IReadOnlyList<int> Tokens => _tokens;
    public int OutputLength => _tokens.Count - PromptLength;
    public IEnumerable<int> OutputTokens => _tokens.Skip(PromptLength);
    /// <summary>Tokens whose keys and values are in the KV cache.</summary>
    public int NumComputed { get; set; }
    /// <summary>Prompt tokens found in the cache at admission (not recomputed).</summary>
    public int CachedPromptTokens { get; set; }
    public List<int> BlockTable { get; } = [];
    /// <summary>Hashes of this sequence's full blocks, as far as they have been needed.</summary>
    public List<BlockHash> BlockHashes { get; } = [];
    /// <summary>How many leading blocks of the table have been offered to the prefix cache.</summary>
    public int RegisteredBlocks { get; set; }
    public SequenceStatus Status { get; set; } = SequenceStatus.Waiting;
    public SamplerState SamplerState { get; }
    public IIncrementalTextDecoder? Decoder { get; }
    public StopStringFilter StopFilter { get; }
    public Channel<GenerationUpdate> Updates { get; } =
        Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    public string? FinishReason { get; set; }
    /// <summary>Set when this sequence's last token must still be written to the cache before it is parked.</summary>
    public bool FlushingTail { get; set; }
    /// <summary>Its parked cache was dropped (the session was deleted) before it was parked: free it instead.</summary>
    public bool DiscardParking { get; set; }
    /// <summary>Admitted at least once; what the cache held at the first admission is what usage reports.</summary>
    public bool Admitted { get; set; }

    public Sequence(long id, GenerationRequest request, IIncrementalTextDecoder? decoder)
    {
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

    public void Append(int token)
    {
        _tokens.Add(token);
        SamplerState.Append(token);
    }

    public void Dispose() => SamplerState.Dispose();
}
