using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Which instructions the kernels use: AVX-512 where the machine has it, else 256-bit vectors (AVX2 and FMA, or
/// whatever <c>Vector256</c> maps to), else plain scalar code, which is also every fast path's reference.
/// </summary>
public enum KernelPath
{
    Scalar,
    Vector256,
    Avx512,
}

public static class KernelPaths
{
    /// <summary>The fastest path this machine runs, chosen once at start-up.</summary>
    public static KernelPath Best { get; } =
        Avx512F.IsSupported && Avx512BW.IsSupported ? KernelPath.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? KernelPath.Vector256
        : KernelPath.Scalar;

    /// <summary>Every path this machine can run, for tests that compare each with the reference.</summary>
    public static IReadOnlyList<KernelPath> Available { get; } =
        Enum.GetValues<KernelPath>().Where(p => p <= Best).ToArray();
}
