using Qwen3Cluster.Model.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// A step's <see cref="ForwardContext"/> as index tensors on one device, built once and shared by every layer of
/// a stage: positions, the KV slot of each new token, and the padded [B, Q] / [B, L] views attention works in.
/// </summary>
public sealed class AttentionMetadata : IDisposable
{
    readonly ForwardContext _context;
    readonly Device _device;
    readonly Dictionary<int, Tensor> _masks = [];

    /// <summary>The step's slices, as the scheduler made them.</summary>
    public ForwardContext Context => _context;
    /// <summary>The KV slot of each new token [T], on the host.</summary>
    public long[] Slots { get; }
    public Tensor Positions { get; }     // [T]
    public Tensor SlotMapping { get; }   // [T]
    public Tensor QueryIndex { get; }    // [B, Q]: packed row of each padded query
    public Tensor GatherIndex { get; }   // [B, L]: KV slot of each padded context position
    public Tensor UnpadIndex { get; }    // [T]: row of each packed token in the flattened [B * Q]
    public int BatchSize { get; }
    public int MaxQuery { get; }
    public int MaxContext { get; }

    public AttentionMetadata(ForwardContext context, Device device)
    {
        _context = context;
        _device = device;
        var slices = context.Slices;
        int bs = context.BlockSize;
        BatchSize = slices.Count;
        MaxQuery = slices.Max(s => s.QueryLength);
        MaxContext = slices.Max(s => s.ContextLength);
        int tokens = context.TokenCount;
        var positions = new long[tokens];
        var slots = new long[tokens];
        var queryIndex = new long[BatchSize * MaxQuery];
        var gather = new long[BatchSize * MaxContext];
        var unpad = new long[tokens];
        int row = 0;
        for (int b = 0; b < BatchSize; b++)
        {
            var s = slices[b];
            for (int q = 0; q < s.QueryLength; q++)
            {
                int position = s.StartPosition + q;
                positions[row] = position;
                slots[row] = Slot(s.BlockTable, position, bs);
                queryIndex[b * MaxQuery + q] = row;
                unpad[row] = b * MaxQuery + q;
                row++;
            }
            for (int l = 0; l < s.ContextLength; l++)
                gather[b * MaxContext + l] = Slot(s.BlockTable, l, bs);
        }
        Slots = slots;
        Positions = tensor(positions, device: device);
        SlotMapping = tensor(slots, device: device);
        QueryIndex = tensor(queryIndex, [BatchSize, MaxQuery], device: device);
        GatherIndex = tensor(gather, [BatchSize, MaxContext], device: device);
        UnpadIndex = tensor(unpad, device: device);
    }

    static long Slot(int[] blockTable, int position, int blockSize) =>
        (long)blockTable[position / blockSize] * blockSize + position % blockSize;

    /// <summary>
    /// [B, 1, 1, Q, L]: true where a query may attend a key (causal, within its own context, and within the
    /// sliding window if any). Padded query rows attend their sequence's first key so no row is empty.
    /// </summary>
    public Tensor Mask(int? slidingWindow)
    {
        int key = slidingWindow ?? 0;
        if (_masks.TryGetValue(key, out var cached)) return cached;
        var allowed = new bool[BatchSize * MaxQuery * MaxContext];
        for (int b = 0; b < BatchSize; b++)
        {
            var s = _context.Slices[b];
            for (int q = 0; q < MaxQuery; q++)
            {
                int offset = (b * MaxQuery + q) * MaxContext;
                if (q >= s.QueryLength)
                {
                    allowed[offset] = true;
                    continue;
                }
                int position = s.StartPosition + q;
                int first = slidingWindow is int w ? Math.Max(0, position - w + 1) : 0;
                for (int l = first; l <= position; l++) allowed[offset + l] = true;
            }
        }
        var mask = tensor(allowed, [BatchSize, 1, 1, MaxQuery, MaxContext], device: _device).DetachFromDisposeScope();
        _masks[key] = mask;
        return mask;
    }

    public void Dispose()
    {
        Positions.Dispose();
        SlotMapping.Dispose();
        QueryIndex.Dispose();
        GatherIndex.Dispose();
        UnpadIndex.Dispose();
        foreach (var m in _masks.Values) m.Dispose();
    }
}
