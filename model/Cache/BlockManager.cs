namespace Qwen3Cluster.Model.Cache;

/// <summary>
/// Bookkeeping of a KV pool's blocks: reference counts, and a prefix cache over full blocks (vLLM's automatic
/// prefix caching). A full block is named by a hash of its tokens and of the block before it, so equal prefixes
/// have equal chains of hashes. A freed block that has a hash is kept as evictable cache rather than forgotten:
/// a later request with the same prefix takes it back instead of recomputing it, and allocation reclaims the
/// least recently freed such block only when no never-used block is left. Plain data, no tensors; every stage's
/// pool has the same number of blocks, so one manager decides for all of them.
/// </summary>
public sealed class BlockManager
{
    readonly int[] _refCounts;
    readonly BlockHash?[] _hashes;
    readonly Dictionary<BlockHash, int> _cached = [];
    readonly LinkedList<int> _free = new();
    readonly LinkedListNode<int>?[] _freeNodes;

    public int NumBlocks { get; }
    public int BlockSize { get; }
    /// <summary>Blocks that can be handed out: never used, or cached but referenced by no sequence.</summary>
    public int FreeBlocks => _free.Count;
    /// <summary>Blocks referenced by a sequence or a parked cache.</summary>
    public int UsedBlocks => NumBlocks - FreeBlocks;
    /// <summary>Blocks whose contents are findable by hash (in use or evictable).</summary>
    public int CachedBlocks => _cached.Count;

    public BlockManager(int numBlocks, int blockSize)
    {
        if (numBlocks <= 0) throw new ArgumentOutOfRangeException(nameof(numBlocks));
        if (blockSize <= 0) throw new ArgumentOutOfRangeException(nameof(blockSize));
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        _refCounts = new int[numBlocks];
        _hashes = new BlockHash?[numBlocks];
        _freeNodes = new LinkedListNode<int>?[numBlocks];
        for (int b = 0; b < numBlocks; b++) _freeNodes[b] = _free.AddLast(b);
    }

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    public bool CanAllocate(int blocks) => blocks <= _free.Count;

    /// <summary>A block for new contents: a never-used one first (they sit at the front), else the least recently freed cached one.</summary>
    public int Allocate()
    {
        var node = _free.First ?? throw new InvalidOperationException("No free KV blocks.");
        int block = node.Value;
        _free.RemoveFirst();
        _freeNodes[block] = null;
        if (_hashes[block] is { } hash)
        {
            _cached.Remove(hash);
            _hashes[block] = null;
        }
        _refCounts[block] = 1;
        return block;
    }

    /// <summary>Grows <paramref name="table"/> until it covers <paramref name="tokens"/>; false (and no change) if the pool is short.</summary>
    public bool EnsureCapacity(List<int> table, int tokens)
    {
        int needed = BlocksFor(tokens) - table.Count;
        if (needed <= 0) return true;
        if (!CanAllocate(needed)) return false;
        for (int i = 0; i < needed; i++) table.Add(Allocate());
        return true;
    }

    public void AddReference(int block)
    {
        if (_refCounts[block]++ == 0)
        {
            _free.Remove(_freeNodes[block]!);
            _freeNodes[block] = null;
        }
    }

    public int ReferenceCount(int block) => _refCounts[block];

    public void Release(int block)
    {
        if (_refCounts[block] <= 0) throw new InvalidOperationException($"Block {block} is already free.");
        if (--_refCounts[block] > 0) return;
        // Cached contents go to the back (evicted last); blank blocks to the front (handed out first).
        _freeNodes[block] = _hashes[block] is null ? _free.AddFirst(block) : _free.AddLast(block);
    }

    public void Release(IEnumerable<int> table)
    {
        foreach (int block in table) Release(block);
    }

    /// <summary>Names a full block by its hash, unless an equal block already carries it.</summary>
    public void Register(int block, BlockHash hash)
    {
        if (_hashes[block] is not null || _cached.ContainsKey(hash)) return;
        _hashes[block] = hash;
        _cached[hash] = block;
    }

    /// <summary>
    /// The longest run of cached blocks matching <paramref name="hashes"/> from the start, each now referenced
    /// by the caller.
    /// </summary>
    public List<int> TakeCachedPrefix(IReadOnlyList<BlockHash> hashes)
    {
        var blocks = new List<int>();
        foreach (var hash in hashes)
        {
            if (!_cached.TryGetValue(hash, out int block)) break;
            AddReference(block);
            blocks.Add(block);
        }
        return blocks;
    }

    /// <summary>Forgets every allocation and cached block (the pools were replaced and hold nothing any more).</summary>
    public void Reset()
    {
        _free.Clear();
        _cached.Clear();
        for (int b = 0; b < NumBlocks; b++)
        {
            _refCounts[b] = 0;
            _hashes[b] = null;
            _freeNodes[b] = _free.AddLast(b);
        }
    }
}
