using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Q8_0 weights interleaved eight rows at a time (<see cref="WeightFormat.Q8_0x8"/>, as <see cref="Q8x8Kernels"/>
/// describes the layout) on AVX2 without VNNI, as ik_llama.cpp's Q8_0_R8 kernel does it: each run of 32 weight bytes
/// (4 values of each of 8 rows) loses its +128 bias, its magnitudes meet the activation's 4 values at that place,
/// broadcast and carrying the weights' signs (<c>vpmaddubsw</c>, exact: a pair is at most 2 · 128 · 127), and
/// <c>vpmaddwd</c> by ones adds each row's 4 products into its int32 lane. After a block's 8 runs each lane holds its
/// row's exact block product, and one convert and one multiply-add by the 8 rows' scales times the activation's
/// serve 8 rows: the row-by-row kernel pays that convert and multiply-add for every row. A 2-core Zen VM ran this
/// 1.4x as fast as row by row (one token and four, from the cache).
/// </summary>
[SkipLocalsInit]
static unsafe class Q8x8Avx2Kernels
{
    const int Block = WeightFormats.Q8Block;
    const int BlockBytes = 8 * WeightFormats.Q8BlockBytes;

    /// <summary>Rows [first, last) (multiples of 8) against tokens [t0, t1): each group of 8 rows against every token before the next group.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        int blocks = w.Cols / Block;
        for (int g = first / 8; g < last / 8; g++)
        {
            byte* group = w.Group(g);
            float* yg = y + 8 * g - first;
            int t = t0;
            // Four tokens at a time; two or three left over run as four with the last repeated, only theirs stored.
            // The first four read the group from memory and ask for the next group as they go.
            for (; t + 1 < t1; t += 4) Group4(group, blocks, x, t, Math.Min(4, t1 - t), yg + (t - t0) * ldy, ldy, t == t0 && g + 1 < last / 8);
            for (; t < t1; t++) Group1(group, blocks, x, t, yg + (t - t0) * ldy);
        }
    }

    /// <summary>Run q of a block against one token's 4 values there: each row's 4 products, summed in its int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Run(Vector256<sbyte> signed, Vector256<byte> magnitude, int values) =>
        Q8Avx2Kernels.Products(signed, magnitude, Vector256.Create(values).AsSByte());

    /// <summary>One group of 8 rows, one token: y[0..8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Group1(byte* group, int blocks, in PreparedInput x, int t, float* y)
    {
        int* xq = (int*)x.QuantizedRow(t);
        float* dx = x.ScaleRow(t);
        Vector256<float> f0 = default, f1 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* block = group + b * BlockBytes;
            if ((b & 1) == 0)
            {
                for (int line = 0; line < 2 * BlockBytes; line += 64) Sse.Prefetch0(block + ProductKernels.PrefetchDistance + line);
            }
            int* xb = xq + b * 8;
            // Two chains of runs, so their adds overlap.
            Vector256<int> i0 = default, i1 = default;
            for (int q = 0; q < 8; q += 2)
            {
                var s = Q8Avx2Kernels.Unbiased(block + q * 32);
                i0 += Run(s, Avx2.Abs(s), xb[q]);
                var u = Q8Avx2Kernels.Unbiased(block + q * 32 + 32);
                i1 += Run(u, Avx2.Abs(u), xb[q + 1]);
            }
            var product = Avx.ConvertToVector256Single(i0 + i1);
            var scales = Q8x8Kernels.Scales(block) * Vector256.Create(dx[b]);
            if ((b & 1) == 0) f0 = Fma.MultiplyAdd(product, scales, f0);
            else f1 = Fma.MultiplyAdd(product, scales, f1);
        }
        (f0 + f1).Store(y);
    }

    /// <summary>
    /// One group of 8 rows, four tokens (the last <c>4 - count</c> repeats of the last real one): each run's magnitudes
    /// made once for the four. With <paramref name="askNext"/> the next group (right after this one) is asked for.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Group4(byte* group, int blocks, in PreparedInput x, int t, int count, float* y, long ldy, bool askNext)
    {
        int t2 = t + Math.Min(2, count - 1), t3 = t + Math.Min(3, count - 1);
        int* x0 = (int*)x.QuantizedRow(t), x1 = (int*)x.QuantizedRow(t + 1), x2 = (int*)x.QuantizedRow(t2), x3 = (int*)x.QuantizedRow(t3);
        float* d0 = x.ScaleRow(t), d1 = x.ScaleRow(t + 1), d2 = x.ScaleRow(t2), d3 = x.ScaleRow(t3);
        long next = (long)blocks * BlockBytes;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* block = group + b * BlockBytes;
            if (askNext) Q8x8Kernels.AskBlock(block + next);
            int at = b * 8;
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            for (int q = 0; q < 8; q++)
            {
                var s = Q8Avx2Kernels.Unbiased(block + q * 32);
                var m = Avx2.Abs(s);
                i0 += Run(s, m, x0[at + q]);
                i1 += Run(s, m, x1[at + q]);
                i2 += Run(s, m, x2[at + q]);
                i3 += Run(s, m, x3[at + q]);
            }
            var scales = Q8x8Kernels.Scales(block);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), scales * Vector256.Create(d0[b]), f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), scales * Vector256.Create(d1[b]), f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), scales * Vector256.Create(d2[b]), f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), scales * Vector256.Create(d3[b]), f3);
        }
        f0.Store(y);
        f1.Store(y + ldy);
        if (count > 2) f2.Store(y + 2 * ldy);
        if (count > 3) f3.Store(y + 3 * ldy);
    }
}
