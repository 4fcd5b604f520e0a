using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Asks Linux to back a large resident buffer (weights, the KV pool) with 2 MiB pages before it is first written:
/// with transparent huge pages in <c>madvise</c> mode, the default of most distributions, a buffer gets them only
/// when asked. A decode step streams every weight once, and 4 KiB pages cost it a TLB miss per page and prefetchers
/// that stop at each page's end. Elsewhere, or when the kernel refuses, nothing changes; <c>QWEN3_HUGEPAGES=0</c>
/// turns the advice off (to measure what it is worth).
/// </summary>
public static partial class HugePages
{
    const long Size = 2L << 20;
    const int MadviseHugePage = 14;
    static readonly bool Enabled = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("QWEN3_HUGEPAGES") != "0";

    /// <summary>Advises the whole 2 MiB pages inside a CPU tensor's storage; tensors under 4 MiB are left alone.</summary>
    public static unsafe void Advise(Tensor tensor)
    {
        if (!Enabled || tensor.device.type != TorchSharp.DeviceType.CPU || !tensor.is_contiguous()) return;
        long bytes = tensor.numel() * tensor.ElementSize;
        if (bytes < 2 * Size) return;
        Advise(TensorMemory.Address(tensor), bytes);
    }

    /// <summary>Advises the whole 2 MiB pages inside [start, start + bytes).</summary>
    public static unsafe void Advise(void* buffer, long bytes)
    {
        if (!Enabled || bytes < 2 * Size) return;
        long start = (long)buffer;
        long from = (start + Size - 1) / Size * Size, to = (start + bytes) / Size * Size;
        if (to > from) _ = madvise((nint)from, (nuint)(to - from), MadviseHugePage);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(nint address, nuint length, int advice);
}
