using System.Runtime.InteropServices;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// The scratch memory of the products a thread starts (prepared activations, expert buckets), so a kernel never
/// allocates: per thread, 64-byte aligned slices handed out from the start of each product. A slice never moves;
/// when a product needs more than the buffer holds, another buffer is added, and the next product gets one buffer
/// of the total size.
/// </summary>
public sealed unsafe class KernelScratch
{
    [ThreadStatic] static KernelScratch? _current;

    readonly List<(nint Buffer, long Capacity)> _buffers = [];
    long _used;
    long _total;

    /// <summary>This thread's scratch, emptied for a new product.</summary>
    public static KernelScratch ForProduct()
    {
        var scratch = _current ??= new KernelScratch();
        scratch.Reset();
        return scratch;
    }

    void Reset()
    {
        if (_buffers.Count > 1)
        {
            long total = _total;
            foreach (var (buffer, _) in _buffers) NativeMemory.AlignedFree((void*)buffer);
            _buffers.Clear();
            _total = 0;
            Add(total);
        }
        _used = 0;
    }

    void Add(long capacity)
    {
        _buffers.Add(((nint)NativeMemory.AlignedAlloc((nuint)capacity, 64), capacity));
        _total += capacity;
        _used = 0;
    }

    /// <summary>Room for <paramref name="count"/> values of T, valid until the next <see cref="ForProduct"/> on this thread.</summary>
    public T* Take<T>(long count) where T : unmanaged
    {
        long bytes = Math.Max(64, (count * sizeof(T) + 63) / 64 * 64);
        if (_buffers.Count == 0 || _used + bytes > _buffers[^1].Capacity) Add(Math.Max(bytes, Math.Max(1 << 20, _total)));
        T* slice = (T*)((byte*)_buffers[^1].Buffer + _used);
        _used += bytes;
        return slice;
    }
}
