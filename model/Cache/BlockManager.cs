namespace Qwen3Cluster.Model.Cache;

/// <summary>
/// Bookkeeping of a KV pool's blocks: a free list and reference counts. Plain data, no tensors; every stage's
/// pool has the same number of blocks, so one manager decides for all of them.
/// </summary>
public sealed class BlockManager
{
    readonly int[] _refCounts;
    readonly LinkedList<int> _free = new();
    readonly LinkedListNode<int>?[] _freeNodes;

    public int NumBlocks { get; }
    public int BlockSize { get; }
    public int FreeBlocks => _free.Count;
    public int UsedBlocks => NumBlocks - FreeBlocks;

    public BlockManager(int numBlocks, int blockSize)
    {
        if (numBlocks <= 0) throw new ArgumentOutOfRangeException(nameof(numBlocks));
        if (blockSize <= 0) throw new ArgumentOutOfRangeException(nameof(blockSize));
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        _refCounts = new int[numBlocks];
        _freeNodes = new LinkedListNode<int>?[numBlocks];
        for (int b = 0; b < numBlocks; b++) _freeNodes[b] = _free.AddLast(b);
    }

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    public bool CanAllocate(int blocks) => blocks <= _free.Count;

    public int Allocate()
    {
        var node = _free.First ?? throw new InvalidOperationException("No free KV blocks.");
        _free.RemoveFirst();
        _freeNodes[node.Value] = null;
        _refCounts[node.Value] = 1;
        return node.Value;
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
        if (_refCounts[block] == 0) throw new InvalidOperationException($"Block {block} is free.");
        _refCounts[block]++;
    }

    public int ReferenceCount(int block) => _refCounts[block];

    public void Release(int block)
    {
        if (_refCounts[block] <= 0) throw new InvalidOperationException($"Block {block} is already free.");
        if (--_refCounts[block] == 0) _freeNodes[block] = _free.AddLast(block);
    }

    public void Release(IEnumerable<int> table)
    {
        foreach (int block in table) Release(block);
    }

    /// <summary>Forgets every allocation (the pools were replaced and hold nothing any more).</summary>
    public void Reset()
    {
        _free.Clear();
        for (int b = 0; b < NumBlocks; b++)
        {
            _refCounts[b] = 0;
            _freeNodes[b] = _free.AddLast(b);
        }
    }
}
