using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Which instructions the kernels use, each path a superset of the one before: plain scalar code (every fast path's
/// reference), 256-bit vectors (AVX2 and FMA: 8-bit weights by <c>vpmaddubsw</c>, as ggml and ik_llama.cpp do without
/// VNNI), AVX-512, and AVX-512 with the 256-bit VNNI dot product of bytes (<c>vpdpbusd</c>) for 8-bit weights.
/// </summary>
public enum KernelPath
{
    Scalar,
    Vector256,
    Avx512,
    Avx512Vnni,
}

public static class KernelPaths
{
    /// <summary>The fastest path this machine runs, chosen once at start-up.</summary>
    public static KernelPath Best { get; } =
        Avx512F.IsSupported && Avx512BW.IsSupported ? (AvxVnni.IsSupported ? KernelPath.Avx512Vnni : KernelPath.Avx512)
        : Avx2.IsSupported && Fma.IsSupported ? KernelPath.Vector256
        : KernelPath.Scalar;

    /// <summary>Every path this machine can run, for tests that compare each with the reference.</summary>
    public static IReadOnlyList<KernelPath> Available { get; } =
        Enum.GetValues<KernelPath>().Where(p => p <= Best).ToArray();
}
