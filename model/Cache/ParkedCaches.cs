namespace Qwen3Cluster.Model.Cache;

/// <summary>
/// The KV caches of sessions between their turns, beside <see cref="BlockManager"/>: a finished turn's blocks stay
/// referenced under its session's key, with the tokens they hold, so that the next turn resumes them instead of
/// recomputing its history. A key is pending while its turn still writes its last token into the cache; a resume
/// of that key waits for it. Idle caches are the first thing taken back when the pool runs short, the longest
/// parked first. Plain bookkeeping: no tensors.
/// </summary>
public sealed class ParkedCaches(BlockManager blocks)
{
    readonly Dictionary<string, Parked> _parked = new(StringComparer.Ordinal);
    readonly HashSet<string> _pending = new(StringComparer.Ordinal);
    long _clock;

    sealed record Parked(int[] Tokens, int[] Blocks, long Order);

    public IReadOnlyCollection<string> Keys => _parked.Keys;

    /// <summary>Whether a turn under this key has answered and is still writing its last token.</summary>
    public bool IsPending(string key) => _pending.Contains(key);

    /// <summary>A turn under <paramref name="key"/> has answered and will park its cache once its last token is written.</summary>
    public void Expect(string key)
    {
        Drop(key);
        _pending.Add(key);
    }

    /// <summary>
    /// Keeps <paramref name="blockTable"/> (the caller's references pass to this cache) holding <paramref name="tokens"/>
    /// under <paramref name="key"/>; frees it instead when the key was dropped while its last token was written.
    /// </summary>
    public void Park(string key, IReadOnlyList<int> tokens, IReadOnlyList<int> blockTable)
    {
        if (!_pending.Remove(key))
        {
            blocks.Release(blockTable);
            return;
        }
        _parked[key] = new Parked([.. tokens], [.. blockTable], ++_clock);
    }

    /// <summary>The turn expected to park under <paramref name="key"/> lost its cache: nothing will come.</summary>
    public void Abandon(string key) => _pending.Remove(key);

    /// <summary>
    /// Hands over the cache parked under <paramref name="key"/> when <paramref name="prompt"/> extends the tokens it
    /// holds: its blocks (now the caller's references) and how many tokens they hold. A cache the prompt does not
    /// extend is freed.
    /// </summary>
    public (IReadOnlyList<int> Blocks, int Tokens)? Resume(string key, IReadOnlyList<int> prompt)
    {
        if (!_parked.Remove(key, out var parked)) return null;
        bool extends = parked.Tokens.Length < prompt.Count && parked.Tokens.AsSpan().SequenceEqual(prompt.Take(parked.Tokens.Length).ToArray());
        if (extends) return (parked.Blocks, parked.Tokens.Length);
        blocks.Release(parked.Blocks);
        return null;
    }

    /// <summary>Frees the cache under <paramref name="key"/>, or the one its turn is about to park.</summary>
    public void Drop(string key)
    {
        _pending.Remove(key);
        if (_parked.Remove(key, out var parked)) blocks.Release(parked.Blocks);
    }

    /// <summary>Frees idle caches, the longest parked first, until <paramref name="needed"/> blocks can be allocated; whether they can.</summary>
    public bool MakeRoom(int needed)
    {
        foreach (var (key, _) in _parked.OrderBy(p => p.Value.Order).ToList())
        {
            if (blocks.CanAllocate(needed)) break;
            Drop(key);
        }
        return blocks.CanAllocate(needed);
    }

    /// <summary>Frees every cache and forgets every pending key.</summary>
    public void Clear()
    {
        foreach (var key in _parked.Keys.ToList()) Drop(key);
        _pending.Clear();
    }
}
