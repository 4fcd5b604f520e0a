using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>Turns raw little-endian bytes into tensors: one copy into a CPU tensor, then dtype and device.</summary>
public static class TensorFactory
{
    const long ChunkBytes = 1L << 30;

    public static ScalarType ScalarTypeOf(SafetensorsDType dtype) => dtype switch
    {
        SafetensorsDType.F32 => ScalarType.Float32,
        SafetensorsDType.BF16 => ScalarType.BFloat16,
        SafetensorsDType.F16 => ScalarType.Float16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>
    /// A tensor of <paramref name="target"/> on <paramref name="device"/> from a checkpoint's bytes; kept at the stored
    /// width on the CPU, its memory comes from <paramref name="arena"/> when one is given.
    /// </summary>
    public static unsafe Tensor FromBytes(IntPtr source, long byteLength, SafetensorsDType dtype, long[] shape,
        ScalarType target, Device device, Kernels.WeightArena? arena = null)
    {
        bool resident = ScalarTypeOf(dtype) == target && device.type == DeviceType.CPU;
        var raw = resident && arena is not null ? arena.Take(target, shape) : empty(shape, dtype: ScalarTypeOf(dtype));
        if (resident && arena is null) Kernels.HugePages.Advise(raw);
        if (byteLength > 0)
        {
            using var flat = raw.view(-1);
            long elementSize = dtype.ByteSize();
            long elementsPerChunk = ChunkBytes / elementSize;
            for (long first = 0; first * elementSize < byteLength; first += elementsPerChunk)
            {
                long count = Math.Min(elementsPerChunk, byteLength / elementSize - first);
                using var chunk = flat.narrow(0, first, count);
                new ReadOnlySpan<byte>((byte*)source + first * elementSize, checked((int)(count * elementSize)))
                    .CopyTo(chunk.bytes);
            }
        }
        if (raw.dtype == target && device.type == DeviceType.CPU) return raw;
        using (raw)
            return raw.to(target, device);
    }

    /// <summary>The raw little-endian bytes of a tensor (any device), as safetensors stores them.</summary>
    public static byte[] ToBytes(Tensor tensor)
    {
        using var cpu = ContiguousOnCpu(tensor);
        return cpu.bytes.ToArray();
    }

    /// <summary>
    /// The tensor's values contiguous in CPU memory, as a new tensor to dispose (sharing storage where it can). The copy
    /// to the CPU is disposed here: a temporary left to the finalizer can be freed while the native call that reads it runs.
    /// </summary>
    public static Tensor ContiguousOnCpu(Tensor tensor)
    {
        if (tensor.device.type == DeviceType.CPU) return tensor.contiguous();
        using var cpu = tensor.cpu();
        return cpu.contiguous();
    }
}
