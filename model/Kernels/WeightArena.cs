using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Where one load's resident matrices live on the CPU: a few 64 MiB buffers per dtype, each on 2 MiB pages
/// (<see cref="HugePages"/>), handed out as contiguous views 4 KiB apart. A bench-moe expert matrix is 1 MiB, too
/// small to be given huge pages of its own, and a decode step streams hundreds of them: in shared buffers they read
/// 5-7% faster (measured on the step's products). A matrix of half a buffer or more gets a buffer of its own. Pages
/// of a buffer that nothing was put in are never touched, so they cost no memory.
/// </summary>
public sealed class WeightArena : IDisposable
{
    const long BufferBytes = 64L << 20;
    const long Alignment = 4096;
    readonly Dictionary<ScalarType, (Tensor Buffer, long Used)> _open = [];

    /// <summary>A contiguous uninitialised tensor of <paramref name="shape"/>, to be filled by the loader.</summary>
    public Tensor Take(ScalarType dtype, long[] shape)
    {
        long elements = shape.Aggregate(1L, (a, b) => a * b);
        long size = ElementSize(dtype);
        if (elements * size >= BufferBytes / 2 || elements == 0)
        {
            var own = empty(shape, dtype);
            HugePages.Advise(own);
            return own;
        }
        long step = (elements * size + Alignment - 1) / Alignment * Alignment / size;
        if (!_open.TryGetValue(dtype, out var open) || open.Used + step > BufferBytes / size)
        {
            // Views keep a buffer's memory alive; only this handle to it goes.
            open.Buffer?.Dispose();
            open = (empty([BufferBytes / size], dtype), 0);
            HugePages.Advise(open.Buffer);
        }
        using var slice = open.Buffer.narrow(0, open.Used, elements);
        _open[dtype] = (open.Buffer, open.Used + step);
        return slice.view(shape);
    }

    static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        ScalarType.Byte or ScalarType.Int8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "No resident weight has this dtype."),
    };

    public void Dispose()
    {
        foreach (var (buffer, _) in _open.Values) buffer.Dispose();
        _open.Clear();
    }
}
