using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>Where a contiguous CPU tensor's values are in memory, for the kernels and loaders that write or read them there.</summary>
public static unsafe class TensorMemory
{
    /// <summary>
    /// The address of the first element, found through a one-element view: a span of the whole storage (the KV pool,
    /// a large matrix) may hold more bytes than a span can count. libtorch never moves a CPU tensor's storage.
    /// </summary>
    public static byte* Address(Tensor t)
    {
        using var flat = t.view(-1);
        using var first = flat.narrow(0, 0, 1);
        fixed (byte* p = first.bytes) return p;
    }
}
