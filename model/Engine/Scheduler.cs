using Qwen3Cluster.Model.Cache;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// Continuous batching over a paged KV cache. Each step first continues the running sequences (decode tokens,
/// or the next chunk of a long prompt), then admits waiting ones FIFO while blocks and the token budget last.
/// A waiting request is admitted only when its whole prompt fits; when decoding runs out of blocks the newest
/// running sequence is preempted and later recomputed. A finished session turn parks its cache in
/// <see cref="ParkedCaches"/> for the next turn. Plain bookkeeping: no tensors.
/// </summary>
public sealed class Scheduler
{
    readonly BlockManager _blocks;
    readonly ParkedCaches _parked;
    readonly SchedulerOptions _options;
    readonly LinkedList<Sequence> _waiting = new();
    /// <summary>Sequences with blocks: running, and parking their last token.</summary>
    readonly List<Sequence> _running = [];

    public Scheduler(SchedulerOptions options)
    {
        _options = options;
        _blocks = new BlockManager(options.NumBlocks, options.BlockSize);
        _parked = new ParkedCaches(_blocks);
    }

    public BlockManager Blocks => _blocks;
    public ParkedCaches Parked => _parked;
    public SchedulerOptions Options => _options;
    public int WaitingCount => _waiting.Count;
    public int RunningCount => _running.Count;
    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;
    /// <summary>Sequences preempted (their cache dropped, to be recomputed) since this scheduler started.</summary>
    public long Preemptions { get; private set; }

    /// <summary>Queues a sequence; throws when it could never fit, so nothing waits forever.</summary>
    public void Add(Sequence sequence)
    {
        int needed = _blocks.BlocksFor(sequence.Tokens.Count + 1);
        if (needed > _blocks.NumBlocks)
        {
            throw new RequestError(ErrorKind.ResourceExhausted, "prompt",
                $"needs {needed} KV blocks of {_blocks.BlockSize} tokens; the pool has {_blocks.NumBlocks}");
        }

        sequence.Status = SequenceStatus.Waiting;
        _waiting.AddLast(sequence);
    }

    public ScheduledStep? Schedule()
    {
        var slices = new List<ScheduledSlice>();
        int budget = _options.MaxBatchTokens;
        bool preempted = false;
        for (int i = 0; i < _running.Count && budget > 0; i++)
        {
            var sequence = _running[i];
            int count = Math.Min(sequence.PendingTokens, budget);
            if (count <= 0) continue;
            while (!_blocks.EnsureCapacity(sequence.BlockTable, sequence.NumComputed + count))
            {
                // Idle parked caches go before any running sequence loses its cache.
                if (_parked.MakeRoom(_blocks.BlocksFor(sequence.NumComputed + count) - sequence.BlockTable.Count)) continue;
                var victim = _running[^1];
                Preempt(victim);
                preempted = true;
                if (victim == sequence) break;
            }
            if (sequence.Status is SequenceStatus.Waiting or SequenceStatus.Finished) break;
            slices.Add(Slice(sequence, count));
            budget -= count;
        }
        if (!preempted) Admit(slices, ref budget);
        return slices.Count == 0 ? null : new ScheduledStep(slices, _options.BlockSize);
    }

    void Admit(List<ScheduledSlice> slices, ref int budget)
    {
        for (var node = _waiting.First; node is not null && budget > 0 && _running.Count < _options.MaxSequences;)
        {
            var sequence = node.Value;
            var next = node.Next;
            // A session's next turn waits for its previous turn to park the cache it resumes.
            if (sequence.Request.ResumeFrom is { } key && _parked.IsPending(key))
            {
                node = next;
                continue;
            }
            if (sequence.BlockTable.Count == 0) TakeCachedTokens(sequence);
            int needed = _blocks.BlocksFor(sequence.Tokens.Count + 1) - sequence.BlockTable.Count;
            if (!_blocks.CanAllocate(needed) && !_parked.MakeRoom(needed))
            {
                Forget(sequence);
                break;
            }
            int count = Math.Min(sequence.PendingTokens, budget);
            _blocks.EnsureCapacity(sequence.BlockTable, sequence.NumComputed + count);
            _waiting.Remove(node);
            sequence.Status = SequenceStatus.Running;
            sequence.RecordAdmission();
            _running.Add(sequence);
            slices.Add(Slice(sequence, count));
            budget -= count;
            node = next;
        }
    }

    static ScheduledSlice Slice(Sequence sequence, int count) =>
        new(sequence, sequence.NumComputed, count,
            Samples: sequence.Status == SequenceStatus.Running && sequence.NumComputed + count == sequence.Tokens.Count);

    /// <summary>
    /// Records that a step ran: every slice's tokens are now in the cache and its newly full blocks findable, and a
    /// sequence that was writing its last token for its session parks its cache.
    /// </summary>
    public void Completed(ScheduledStep step)
    {
        foreach (var slice in step.Slices)
        {
            var sequence = slice.Sequence;
            sequence.NumComputed = slice.Start + slice.Count;
            RegisterFullBlocks(sequence);
            if (sequence.Status == SequenceStatus.Parking && sequence.PendingTokens == 0) Park(sequence);
        }
    }

    /// <summary>Ends an answered sequence: a session turn parks its cache (once its last token is written), anything else frees it.</summary>
    public void Finish(Sequence sequence)
    {
        if (sequence.Request.ParkAs is not { } key || sequence.Status != SequenceStatus.Running)
        {
            Remove(sequence);
            return;
        }
        _parked.Expect(key);
        sequence.Status = SequenceStatus.Parking;
        if (sequence.PendingTokens == 0) Park(sequence);
    }

    /// <summary>Removes a sequence wherever it is and frees its blocks (aborted, failed, or finished without a session).</summary>
    public void Remove(Sequence sequence)
    {
        switch (sequence.Status)
        {
            case SequenceStatus.Finished:
                return;
            case SequenceStatus.Waiting:
                _waiting.Remove(sequence);
                break;
            case SequenceStatus.Parking:
                _running.Remove(sequence);
                _parked.Abandon(sequence.Request.ParkAs!);
                break;
            default:
                _running.Remove(sequence);
                break;
        }
        sequence.Status = SequenceStatus.Finished;
        Forget(sequence);
    }

    /// <summary>
    /// The pools lost their contents (a stage was re-created): every cached token is gone. Running sequences
    /// start over from their tokens, parked caches are dropped.
    /// </summary>
    public void ResetCache()
    {
        foreach (var sequence in _running.ToList()) Preempt(sequence);
        _parked.Clear();
        _blocks.Reset();
    }

    void Park(Sequence sequence)
    {
        _running.Remove(sequence);
        sequence.Status = SequenceStatus.Finished;
        _parked.Park(sequence.Request.ParkAs!, sequence.Tokens, sequence.BlockTable);
        sequence.BlockTable.Clear();
    }

    void Preempt(Sequence sequence)
    {
        _running.Remove(sequence);
        Forget(sequence);
        if (sequence.Status == SequenceStatus.Parking)
        {
            // Its answer is out; only the cache for its session's next turn is lost.
            _parked.Abandon(sequence.Request.ParkAs!);
            sequence.Status = SequenceStatus.Finished;
            return;
        }
        sequence.Status = SequenceStatus.Waiting;
        _waiting.AddFirst(sequence);
        Preemptions++;
    }

    /// <summary>Drops whatever cache a sequence holds (it will be recomputed, or was never started).</summary>
    void Forget(Sequence sequence)
    {
        _blocks.Release(sequence.BlockTable);
        sequence.BlockTable.Clear();
        sequence.NumComputed = 0;
        sequence.RegisteredBlocks = 0;
    }

    /// <summary>
    /// Starts a sequence from what the cache holds of its tokens: the session cache it resumes, else (with prefix
    /// caching) the cached full blocks its prompt begins with. At least one prompt token is always left to compute,
    /// since the step that computes it is the one that yields the next token's logits.
    /// </summary>
    void TakeCachedTokens(Sequence sequence)
    {
        if (sequence.Request.ResumeFrom is { } key && _parked.Resume(key, sequence.Tokens) is (var blocks, var tokens))
        {
            sequence.BlockTable.AddRange(blocks);
            sequence.NumComputed = tokens;
            sequence.RegisteredBlocks = tokens / _blocks.BlockSize;
            return;
        }
        int usable = (sequence.Tokens.Count - 1) / _blocks.BlockSize;
        if (!_options.PrefixCaching || usable == 0) return;
        BlockHash.Extend(sequence.BlockHashes, sequence.Tokens.Take(usable * _blocks.BlockSize).ToList(), _blocks.BlockSize);
        var hits = _blocks.TakeCachedPrefix(sequence.BlockHashes.Take(usable).ToList());
        sequence.BlockTable.AddRange(hits);
        sequence.NumComputed = hits.Count * _blocks.BlockSize;
        sequence.RegisteredBlocks = hits.Count;
    }

    /// <summary>Offers the sequence's newly full blocks to the prefix cache.</summary>
    void RegisterFullBlocks(Sequence sequence)
    {
        int full = sequence.NumComputed / _blocks.BlockSize;
        if (!_options.PrefixCaching || full <= sequence.RegisteredBlocks) return;
        BlockHash.Extend(sequence.BlockHashes, sequence.Tokens.Take(full * _blocks.BlockSize).ToList(), _blocks.BlockSize);
        for (int b = sequence.RegisteredBlocks; b < full; b++) _blocks.Register(sequence.BlockTable[b], sequence.BlockHashes[b]);
        sequence.RegisteredBlocks = full;
    }
}
