using Qwen3Cluster.Model.Cache;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// Continuous batching over a paged KV cache. Each step first continues the running sequences (decode tokens,
/// or the next chunk of a long prompt), then admits waiting ones FIFO while blocks and the token budget last.
/// A waiting request is admitted only when its whole prompt fits; when decoding runs out of blocks the newest
/// running sequence is preempted and later recomputed. Plain bookkeeping: no tensors.
/// </summary>
public sealed class Scheduler
{
    readonly BlockManager _blocks;
    readonly SchedulerOptions _options;
    readonly LinkedList<Sequence> _waiting = new();
    readonly List<Sequence> _running = [];
    readonly Dictionary<string, ParkedCache> _parked = new(StringComparer.Ordinal);

    public Scheduler(SchedulerOptions options)
    {
        _options = options;
        _blocks = new BlockManager(options.NumBlocks, options.BlockSize);
    }

    public BlockManager Blocks => _blocks;
    public SchedulerOptions Options => _options;
    public int WaitingCount => _waiting.Count;
    public int RunningCount => _running.Count;
    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;
    public IReadOnlyDictionary<string, ParkedCache> Parked => _parked;
    /// <summary>Sequences preempted (their cache dropped, to be recomputed) since this scheduler started.</summary>
    public long Preemptions { get; private set; }

    /// <summary>Queues a sequence; throws when it could never fit, so nothing waits forever.</summary>
    public void Add(Sequence sequence)
    {
        int needed = _blocks.BlocksFor(sequence.Tokens.Count + 1);
        if (needed > _blocks.NumBlocks)
            throw new CapacityExceededException(
                $"The prompt needs {needed} KV blocks of {_blocks.BlockSize} tokens; the pool has {_blocks.NumBlocks}.");
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
                if (EvictParked(_blocks.BlocksFor(sequence.NumComputed + count) - sequence.BlockTable.Count)) continue;
                var victim = _running[^1];
                Preempt(victim);
                preempted = true;
                if (victim == sequence) break;
            }
            if (sequence.Status != SequenceStatus.Running) break;
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
            if (sequence.Request.ResumeFrom is { } key && IsFlushing(key))
            {
                node = next;
                continue;
            }
            if (!sequence.Admitted) sequence.CachedPromptTokens = 0;
            if (sequence.NumComputed == 0 && sequence.BlockTable.Count == 0 && !TakeParked(sequence)) TakeCachedPrefix(sequence);
            int needed = _blocks.BlocksFor(sequence.Tokens.Count + 1) - sequence.BlockTable.Count;
            if (!_blocks.CanAllocate(needed) && !EvictParked(needed))
            {
                Forget(sequence);
                break;
            }
            int count = Math.Min(sequence.PendingTokens, budget);
            _blocks.EnsureCapacity(sequence.BlockTable, sequence.NumComputed + count);
            _waiting.Remove(node);
            sequence.Status = SequenceStatus.Running;
            sequence.Admitted = true;
            _running.Add(sequence);
            slices.Add(Slice(sequence, count));
            budget -= count;
            node = next;
        }
    }

    ScheduledSlice Slice(Sequence sequence, int count) =>
        new(sequence, sequence.NumComputed, count,
            Samples: sequence.NumComputed + count == sequence.Tokens.Count && !sequence.FlushingTail);

    /// <summary>Records that a step ran: every slice's tokens are now in the cache, and its newly full blocks findable.</summary>
    public void Completed(ScheduledStep step)
    {
        foreach (var slice in step.Slices)
        {
            var sequence = slice.Sequence;
            sequence.NumComputed = slice.Start + slice.Count;
            int full = sequence.NumComputed / _blocks.BlockSize;
            if (full <= sequence.RegisteredBlocks) continue;
            BlockHash.Extend(sequence.BlockHashes, sequence.Tokens.Take(full * _blocks.BlockSize).ToList(), _blocks.BlockSize);
            for (int b = sequence.RegisteredBlocks; b < full; b++) _blocks.Register(sequence.BlockTable[b], sequence.BlockHashes[b]);
            sequence.RegisteredBlocks = full;
        }
    }

    /// <summary>Ends a sequence: frees its blocks, or parks them under its ParkAs key once its last token is cached.</summary>
    public void Finish(Sequence sequence)
    {
        if (sequence.Request.ParkAs is { } key && sequence.Status == SequenceStatus.Running)
        {
            if (sequence.NumComputed < sequence.Tokens.Count)
            {
                sequence.FlushingTail = true;
                return;
            }
            _running.Remove(sequence);
            sequence.Status = SequenceStatus.Finished;
            DropParked(key);
            if (sequence.DiscardParking) _blocks.Release(sequence.BlockTable);
            else _parked[key] = new ParkedCache(key, [.. sequence.Tokens], [.. sequence.BlockTable]);
            sequence.BlockTable.Clear();
            return;
        }
        Remove(sequence);
    }

    /// <summary>Removes a sequence wherever it is and frees its blocks (finished without parking, or aborted).</summary>
    public void Remove(Sequence sequence)
    {
        if (sequence.Status == SequenceStatus.Waiting) _waiting.Remove(sequence);
        else _running.Remove(sequence);
        sequence.Status = SequenceStatus.Finished;
        _blocks.Release(sequence.BlockTable);
        sequence.BlockTable.Clear();
    }

    /// <summary>Blocks holding reusable prefixes, in use or not.</summary>
    public int CachedBlocks => _blocks.CachedBlocks;

    /// <summary>Sequences whose tail is written and can now be parked.</summary>
    public IEnumerable<Sequence> FlushedTails() =>
        _running.Where(s => s.FlushingTail && s.NumComputed == s.Tokens.Count).ToList();

    /// <summary>Frees a parked cache, or, if its sequence is still writing its last token, the cache it is about to park.</summary>
    public void DropParked(string key)
    {
        if (_parked.Remove(key, out var parked)) _blocks.Release(parked.BlockTable);
        foreach (var sequence in _running)
            if (sequence.FlushingTail && sequence.Request.ParkAs == key) sequence.DiscardParking = true;
    }

    /// <summary>
    /// The pools lost their contents (a stage was re-created): every cached token is gone. Running sequences
    /// start over from their tokens, parked caches are dropped.
    /// </summary>
    public void ResetCache()
    {
        foreach (var sequence in _running.ToList()) Preempt(sequence);
        foreach (var key in _parked.Keys.ToList()) DropParked(key);
        _blocks.Reset();
    }

    void Preempt(Sequence sequence)
    {
        _running.Remove(sequence);
        Forget(sequence);
        if (sequence.FlushingTail)
        {
            // Its output was already delivered; only the cache for the next turn is lost.
            sequence.Status = SequenceStatus.Finished;
            return;
        }
        sequence.Status = SequenceStatus.Waiting;
        _waiting.AddFirst(sequence);
        Preemptions++;
    }

    bool IsFlushing(string key) => _running.Any(s => s.FlushingTail && s.Request.ParkAs == key);

    /// <summary>Drops whatever cache a sequence holds (it will be recomputed, or was never started).</summary>
    void Forget(Sequence sequence)
    {
        _blocks.Release(sequence.BlockTable);
        sequence.BlockTable.Clear();
        sequence.NumComputed = 0;
        sequence.RegisteredBlocks = 0;
    }

    /// <summary>Takes over the parked cache the request resumes, when its prompt extends the parked tokens.</summary>
    bool TakeParked(Sequence sequence)
    {
        if (sequence.Request.ResumeFrom is not { } key || !_parked.Remove(key, out var parked)) return false;
        var tokens = sequence.Tokens;
        bool extends = parked.Tokens.Count < tokens.Count && parked.Tokens.SequenceEqual(tokens.Take(parked.Tokens.Count));
        if (!extends)
        {
            _blocks.Release(parked.BlockTable);
            return false;
        }
        sequence.BlockTable.AddRange(parked.BlockTable);
        sequence.NumComputed = parked.Tokens.Count;
        if (!sequence.Admitted) sequence.CachedPromptTokens = Math.Min(parked.Tokens.Count, sequence.PromptLength);
        sequence.RegisteredBlocks = parked.Tokens.Count / _blocks.BlockSize;
        return true;
    }

    /// <summary>
    /// Reuses the cached full blocks that start this sequence's prompt. At least one prompt token is always left
    /// to compute, since the step that computes it is the one that yields the next token's logits.
    /// </summary>
    void TakeCachedPrefix(Sequence sequence)
    {
        int usable = (sequence.Tokens.Count - 1) / _blocks.BlockSize;
        if (usable == 0) return;
        BlockHash.Extend(sequence.BlockHashes, sequence.Tokens.Take(usable * _blocks.BlockSize).ToList(), _blocks.BlockSize);
        var hits = _blocks.TakeCachedPrefix(sequence.BlockHashes.Take(usable).ToList());
        sequence.BlockTable.AddRange(hits);
        sequence.NumComputed = hits.Count * _blocks.BlockSize;
        if (!sequence.Admitted) sequence.CachedPromptTokens = Math.Min(sequence.NumComputed, sequence.PromptLength);
        sequence.RegisteredBlocks = hits.Count;
    }

    bool EvictParked(int needed)
    {
        foreach (var parked in _parked.Values.OrderBy(p => p.LastUsed).ToList())
        {
            if (_blocks.CanAllocate(needed)) break;
            DropParked(parked.Key);
        }
        return _blocks.CanAllocate(needed);
    }
}
