using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>Vector functions the kernels need faster than the library's (whose float exp goes through double).</summary>
public static class VectorMath
{
    /// <summary>
    /// e^x, 16 at a time: Cephes' expf (x = n ln 2 + r with |r| &lt;= ln 2 / 2, a degree-6 polynomial for e^r, then
    /// vscalefps by 2^n), within 2 ulp of the exact value; below -87.3 it gives 0's neighbourhood, above 88.7 the largest.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-87.33654f)), Vector512.Create(88.72283f));
        var n = Avx512F.RoundScale(x * Vector512.Create(1.44269504088896341f), 0x08);
        var r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(-0.693359375f), x);
        r = Avx512F.FusedMultiplyAdd(n, Vector512.Create(2.12194440e-4f), r);
        var p = Vector512.Create(1.9875691500E-4f);
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1.3981999507E-3f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(8.3334519073E-3f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(4.1665795894E-2f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(1.6666665459E-1f));
        p = Avx512F.FusedMultiplyAdd(p, r, Vector512.Create(5.0000001201E-1f));
        p = Avx512F.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        return Avx512F.Scale(p, n);
    }

    /// <summary>
    /// e^x, 8 at a time, by the same polynomial as the 16-wide one, with 2^n made in the exponent bits (AVX2 has no
    /// vscalefps): x is held to [-87.33654, 88] so that n stays a normal float's exponent; above 88 it gives e^88.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.33654f)), Vector256.Create(88f));
        var n = Avx.RoundToNearestInteger(x * Vector256.Create(1.44269504088896341f));
        var r = Fma.MultiplyAdd(n, Vector256.Create(-0.693359375f), x);
        r = Fma.MultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);
        var p = Vector256.Create(1.9875691500E-4f);
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1.3981999507E-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(8.3334519073E-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(4.1665795894E-2f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1.6666665459E-1f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(5.0000001201E-1f));
        p = Fma.MultiplyAdd(p, r * r, r + Vector256<float>.One);
        var scale = Avx2.ShiftLeftLogical(Avx.ConvertToVector256Int32(n) + Vector256.Create(127), 23).AsSingle();
        return p * scale;
    }
}
