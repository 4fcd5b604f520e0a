using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Cache;

/// <summary>
/// The preallocated paged KV cache of a range of layers: per layer, keys and values for NumBlocks × BlockSize
/// slots of [Hkv, Dh]. A slot is block × BlockSize + offset; which blocks a sequence owns is decided elsewhere
/// (<see cref="BlockManager"/>), so the pool never grows.
/// </summary>
public sealed class KvCachePool : IDisposable
{
    readonly Tensor[] _keys;
    readonly Tensor[] _values;
    readonly nint[] _keyAddresses;
    readonly nint[] _valueAddresses;

    public int FirstLayer { get; }
    public int NumBlocks { get; }
    public int BlockSize { get; }
    /// <summary>A new value for every pool ever made, so a holder of cached state can tell its pool was replaced.</summary>
    public Guid Generation { get; } = Guid.NewGuid();

    public KvCachePool(int firstLayer, int layers, int numBlocks, int blockSize, int kvHeads, int headDim, Device device)
    {
        FirstLayer = firstLayer;
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        _keys = new Tensor[layers];
        _values = new Tensor[layers];
        _keyAddresses = new nint[layers];
        _valueAddresses = new nint[layers];
        for (int i = 0; i < layers; i++)
        {
            _keys[i] = Zeroed([(long)numBlocks * blockSize, kvHeads, headDim], device);
            _values[i] = Zeroed([(long)numBlocks * blockSize, kvHeads, headDim], device);
        }
    }

    static Tensor Zeroed(long[] shape, Device device)
    {
        var tensor = empty(shape, ScalarType.Float32, device);
        Kernels.HugePages.Advise(tensor);
        // zero_() hands back a second wrapper of the same tensor, and TorchSharp passes the native handle bare: `tensor`
        // must stay reachable until the call returns, or a collection during it runs its finalizer, which frees the
        // storage being zeroed (a silo crashed in THSTensor_zeros_out so while loading a stage, with tiered compilation
        // off, whose fully optimised code lets a local die at its last use).
        tensor.zero_().Dispose();
        return tensor;
    }

    /// <summary>A layer's keys [NumBlocks × BlockSize, Hkv, Dh] (float32): what kernels read and write in place.</summary>
    public Tensor Keys(int layer) => _keys[layer - FirstLayer];

    /// <summary>A layer's values, laid out as <see cref="Keys"/>.</summary>
    public Tensor Values(int layer) => _values[layer - FirstLayer];

    /// <summary>Where a layer's keys start in memory (CPU pools: kernels read and write them there).</summary>
    public nint KeysPointer(int layer) => Address(_keys, _keyAddresses, layer - FirstLayer);

    /// <summary>Where a layer's values start in memory.</summary>
    public nint ValuesPointer(int layer) => Address(_values, _valueAddresses, layer - FirstLayer);

    /// <summary>
    /// Found once per tensor (libtorch never moves a CPU tensor's storage): finding it makes and frees two views, which
    /// cost a decode step of bench-moe about 0.3 ms in all on a 2-core Zen VM when done per layer and step.
    /// </summary>
    static unsafe nint Address(Tensor[] tensors, nint[] addresses, int i) =>
        addresses[i] != 0 ? addresses[i] : addresses[i] = (nint)Kernels.TensorMemory.Address(tensors[i]);

    /// <summary>Stores keys and values [T, Hkv, Dh] of new tokens at their slots [T].</summary>
    public void Write(int layer, Tensor slots, Tensor keys, Tensor values)
    {
        int i = layer - FirstLayer;
        _keys[i].index_copy_(0, slots, keys);
        _values[i].index_copy_(0, slots, values);
    }

    /// <summary>Keys and values [B, L, Hkv, Dh] at the slots of <paramref name="gather"/> [B, L].</summary>
    public (Tensor Keys, Tensor Values) Read(int layer, Tensor gather)
    {
        int i = layer - FirstLayer;
        using var flat = gather.view(-1);
        long b = gather.shape[0], l = gather.shape[1];
        using var k = _keys[i].index_select(0, flat);
        using var v = _values[i].index_select(0, flat);
        return (k.view(b, l, k.shape[1], k.shape[2]), v.view(b, l, v.shape[1], v.shape[2]));
    }

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
