using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>The block job's pieces on 256-bit vectors (AVX2 and FMA), for heads a multiple of 8 wide.</summary>
public static unsafe partial class AttentionKernel
{
    /// <summary>As <see cref="Dots4"/>, 8 lanes at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> Dots4Vector256(float* q0, float* q1, float* q2, float* q3, float* key, int dh)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int i = 0; i < dh; i += 8)
        {
            var kv = Vector256.Load(key + i);
            a0 = Fma.MultiplyAdd(Vector256.Load(q0 + i), kv, a0);
            a1 = Fma.MultiplyAdd(Vector256.Load(q1 + i), kv, a1);
            a2 = Fma.MultiplyAdd(Vector256.Load(q2 + i), kv, a2);
            a3 = Fma.MultiplyAdd(Vector256.Load(q3 + i), kv, a3);
        }
        return ProductKernels.Sum4(a0, a1, a2, a3);
    }

    /// <summary>As <see cref="SoftmaxTile"/>, the tile's 32 scores as four vectors of 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float SoftmaxTileVector256(float* s, int n, float max, ref float sum, out float correction)
    {
        var lanes = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        var none = Vector256.Create(float.NegativeInfinity);
        var in0 = Vector256.LessThan(lanes, Vector256.Create(n)).AsSingle();
        var in1 = Vector256.LessThan(lanes, Vector256.Create(n - 8)).AsSingle();
        var in2 = Vector256.LessThan(lanes, Vector256.Create(n - 16)).AsSingle();
        var in3 = Vector256.LessThan(lanes, Vector256.Create(n - 24)).AsSingle();
        var s0 = Vector256.ConditionalSelect(in0, Vector256.Load(s), none);
        var s1 = Vector256.ConditionalSelect(in1, Vector256.Load(s + 8), none);
        var s2 = Vector256.ConditionalSelect(in2, Vector256.Load(s + 16), none);
        var s3 = Vector256.ConditionalSelect(in3, Vector256.Load(s + 24), none);
        float next = MathF.Max(max, RowOps.HorizontalMax(Vector256.Max(Vector256.Max(s0, s1), Vector256.Max(s2, s3))));
        correction = MathF.Exp(max - next);
        var top = Vector256.Create(next);
        var e0 = VectorMath.Exp(s0 - top) & in0;
        var e1 = VectorMath.Exp(s1 - top) & in1;
        var e2 = VectorMath.Exp(s2 - top) & in2;
        var e3 = VectorMath.Exp(s3 - top) & in3;
        e0.Store(s);
        e1.Store(s + 8);
        e2.Store(s + 16);
        e3.Store(s + 24);
        sum = sum * correction + Vector256.Sum((e0 + e1) + (e2 + e3));
        return next;
    }

    /// <summary>As <see cref="AccumulateValues"/>: 16 columns of the four rows (8 accumulators) held while the values stream by.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AccumulateValuesVector256(float* acc, int dh, float* p, float* correction, float** keys, long values, int n)
    {
        var c0 = Vector256.Create(correction[0]);
        var c1 = Vector256.Create(correction[1]);
        var c2 = Vector256.Create(correction[2]);
        var c3 = Vector256.Create(correction[3]);
        float* p0 = p, p1 = p + Tile, p2 = p + 2 * Tile, p3 = p + 3 * Tile;
        int d = 0;
        for (; d + 16 <= dh; d += 16)
        {
            var a0 = Vector256.Load(acc + d) * c0;
            var b0 = Vector256.Load(acc + d + 8) * c0;
            var a1 = Vector256.Load(acc + dh + d) * c1;
            var b1 = Vector256.Load(acc + dh + d + 8) * c1;
            var a2 = Vector256.Load(acc + 2 * dh + d) * c2;
            var b2 = Vector256.Load(acc + 2 * dh + d + 8) * c2;
            var a3 = Vector256.Load(acc + 3 * dh + d) * c3;
            var b3 = Vector256.Load(acc + 3 * dh + d + 8) * c3;
            for (int j = 0; j < n; j++)
            {
                float* v = keys[j] + values + d;
                var lo = Vector256.Load(v);
                var hi = Vector256.Load(v + 8);
                var w = Vector256.Create(p0[j]);
                a0 = Fma.MultiplyAdd(lo, w, a0);
                b0 = Fma.MultiplyAdd(hi, w, b0);
                w = Vector256.Create(p1[j]);
                a1 = Fma.MultiplyAdd(lo, w, a1);
                b1 = Fma.MultiplyAdd(hi, w, b1);
                w = Vector256.Create(p2[j]);
                a2 = Fma.MultiplyAdd(lo, w, a2);
                b2 = Fma.MultiplyAdd(hi, w, b2);
                w = Vector256.Create(p3[j]);
                a3 = Fma.MultiplyAdd(lo, w, a3);
                b3 = Fma.MultiplyAdd(hi, w, b3);
            }
            a0.Store(acc + d);
            b0.Store(acc + d + 8);
            a1.Store(acc + dh + d);
            b1.Store(acc + dh + d + 8);
            a2.Store(acc + 2 * dh + d);
            b2.Store(acc + 2 * dh + d + 8);
            a3.Store(acc + 3 * dh + d);
            b3.Store(acc + 3 * dh + d + 8);
        }
        for (; d < dh; d += 8)
        {
            var a0 = Vector256.Load(acc + d) * c0;
            var a1 = Vector256.Load(acc + dh + d) * c1;
            var a2 = Vector256.Load(acc + 2 * dh + d) * c2;
            var a3 = Vector256.Load(acc + 3 * dh + d) * c3;
            for (int j = 0; j < n; j++)
            {
                var x = Vector256.Load(keys[j] + values + d);
                a0 = Fma.MultiplyAdd(x, Vector256.Create(p0[j]), a0);
                a1 = Fma.MultiplyAdd(x, Vector256.Create(p1[j]), a1);
                a2 = Fma.MultiplyAdd(x, Vector256.Create(p2[j]), a2);
                a3 = Fma.MultiplyAdd(x, Vector256.Create(p3[j]), a3);
            }
            a0.Store(acc + d);
            a1.Store(acc + dh + d);
            a2.Store(acc + 2 * dh + d);
            a3.Store(acc + 3 * dh + d);
        }
    }
}
