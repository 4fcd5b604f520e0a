using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Row-by-row Q8_0 weights (<see cref="WeightFormat.Q8_0"/>, as <see cref="Q8"/> packs them) against Q8 activations
/// on AVX2 without VNNI, as ggml's AVX2 Q8_0 x Q8_0 does it: per block of 32, the weight bytes lose their +128 bias
/// (xor 0x80), their magnitudes multiply the activation values carrying the weights' signs (<c>vpmaddubsw</c>, exact:
/// a pair's sum is at most 2 · 128 · 127 = 32512), pairs of those widen to int32 (<c>vpmaddwd</c> by ones), and the
/// block's 8 exact partial sums meet both scales in one float multiply-add. One token streams each row; more run four
/// at a time against one row, each block of weights made ready once for the four.
/// W: [N, K/32 blocks] rows (K bytes q + 128, then K/32 float16 scales); x: int8 [M, K], float32 scales [M, K/32].
/// </summary>
[SkipLocalsInit]
static unsafe class Q8Avx2Kernels
{
    const int Block = WeightFormats.Q8Block;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        int k = w.Cols, blocks = k / Block;
        float* combined = stackalloc float[blocks * 4];
        int t = t0;
        // Four tokens at a time; two or three left over run as four with the last repeated, only theirs stored.
        for (; t + 1 < t1; t += 4)
        {
            int count = Math.Min(4, t1 - t);
            for (int r = first; r < last; r++)
            {
                byte* row = w.Row(r);
                for (int j = 0; j < 4; j++) Q8Kernels.Combine(KernelPath.Vector256, (ushort*)(row + k), x.ScaleRow(t + Math.Min(j, count - 1)), blocks, combined + j * blocks);
                Tile1x4(row, blocks, x, t, count, combined, y + (t - t0) * ldy + (r - first), ldy);
            }
        }
        for (; t < t1; t++)
        {
            float* yt = y + (t - t0) * ldy;
            sbyte* xq = x.QuantizedRow(t);
            float* scales = x.ScaleRow(t);
            for (int r = first; r < last; r++)
            {
                byte* row = w.Row(r);
                Q8Kernels.Combine(KernelPath.Vector256, (ushort*)(row + k), scales, blocks, combined);
                yt[r - first] = Dot(row, blocks, xq, combined);
            }
        }
    }

    /// <summary>A block of weights made ready for any number of activations: its signed values and their magnitudes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static (Vector256<sbyte> Signed, Vector256<byte> Magnitude) Weights(byte* w)
    {
        var signed = Unbiased(w);
        return (signed, Avx2.Abs(signed));
    }

    /// <summary>32 stored weight bytes without their +128 bias (the interleaved kernel reads its runs so too).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> Unbiased(byte* w) => (Avx.LoadVector256(w) ^ Vector256.Create((byte)0x80)).AsSByte();

    /// <summary>
    /// 32 weights (their signed values and magnitudes) against 32 activation values: the products of each 4 adjacent
    /// ones summed, exactly, in an int32 lane (a pair is at most 2 · 128 · 127 in <c>vpmaddubsw</c>'s int16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<int> Products(Vector256<sbyte> signed, Vector256<byte> magnitude, Vector256<sbyte> x) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(x, signed)), Vector256.Create((short)1));

    /// <summary>One block's 32 products as 8 exact int32 partial sums, widened to float.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> BlockDot(Vector256<sbyte> signed, Vector256<byte> magnitude, sbyte* x) =>
        Avx.ConvertToVector256Single(Products(signed, magnitude, Avx.LoadVector256(x)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(byte* w, int blocks, sbyte* x, float* combined)
    {
        Vector256<float> a0 = default, a1 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            Sse.Prefetch0(w + b * Block + ProductKernels.PrefetchDistance);
            var (s0, m0) = Weights(w + b * Block);
            var (s1, m1) = Weights(w + b * Block + Block);
            a0 = Fma.MultiplyAdd(BlockDot(s0, m0, x + b * Block), Vector256.Create(combined[b]), a0);
            a1 = Fma.MultiplyAdd(BlockDot(s1, m1, x + b * Block + Block), Vector256.Create(combined[b + 1]), a1);
        }
        if (b < blocks)
        {
            var (s0, m0) = Weights(w + b * Block);
            a0 = Fma.MultiplyAdd(BlockDot(s0, m0, x + b * Block), Vector256.Create(combined[b]), a0);
        }
        return Vector256.Sum(a0 + a1);
    }

    /// <summary>One row, four tokens (combined holds each token's blocks' scales in turn): each block made ready once for the four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile1x4(byte* w, int blocks, in PreparedInput x, int t, int count, float* combined, float* y, long ldy)
    {
        int t2 = t + Math.Min(2, count - 1), t3 = t + Math.Min(3, count - 1);
        sbyte* x0 = x.QuantizedRow(t), x1 = x.QuantizedRow(t + 1), x2 = x.QuantizedRow(t2), x3 = x.QuantizedRow(t3);
        float* c0 = combined, c1 = combined + blocks, c2 = combined + 2 * blocks, c3 = combined + 3 * blocks;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++)
        {
            int at = b * Block;
            var (signed, magnitude) = Weights(w + at);
            a0 = Fma.MultiplyAdd(BlockDot(signed, magnitude, x0 + at), Vector256.Create(c0[b]), a0);
            a1 = Fma.MultiplyAdd(BlockDot(signed, magnitude, x1 + at), Vector256.Create(c1[b]), a1);
            a2 = Fma.MultiplyAdd(BlockDot(signed, magnitude, x2 + at), Vector256.Create(c2[b]), a2);
            a3 = Fma.MultiplyAdd(BlockDot(signed, magnitude, x3 + at), Vector256.Create(c3[b]), a3);
        }
        ProductKernels.StoreColumn(ProductKernels.Sum4(a0, a1, a2, a3), y, ldy, count);
    }
}
