using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Q8_0 weights against Q8 activations (ggml's Q8_0 x Q8_0): per block of 32, the exact integer dot product of the
/// weight's and the activation's int8 values, times both scales, summed in float32. W: [N, K/32 blocks] rows as
/// <see cref="Q8"/> packs them (K bytes q + 128, then K/32 float16 scales); x: int8 [M, K], float32 scales [M, K/32],
/// and on the VNNI path the int32 offsets [M, K/4] that make <c>vpdpbusd</c> of the biased weight bytes exact.
/// </summary>
[SkipLocalsInit]
static unsafe class Q8Kernels
{
    const int Block = WeightFormats.Q8Block;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(KernelPath path, in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        int k = w.Cols, blocks = k / Block;
        float* combined = stackalloc float[blocks * 8];
        int t = t0;
        if (path == KernelPath.Avx512Vnni)
        {
            // Four tokens at a time; two or three left over run as four with the last repeated, only theirs stored.
            for (; t + 1 < t1; t += 4)
            {
                int count = Math.Min(4, t1 - t);
                int r = first;
                for (; r + 2 <= last; r += 2)
                {
                    byte* rowA = w.Row(r), rowB = w.Row(r + 1);
                    for (int j = 0; j < 4; j++)
                    {
                        float* scales = x.ScaleRow(t + Math.Min(j, count - 1));
                        Combine(path, (ushort*)(rowA + k), scales, blocks, combined + j * blocks);
                        Combine(path, (ushort*)(rowB + k), scales, blocks, combined + (4 + j) * blocks);
                    }
                    VnniTile2x4(rowA, rowB, blocks, x, t, count, combined, y + (t - t0) * ldy + (r - first), ldy, t == t0 ? 2 * w.RowBytes : 0);
                }
                for (; r < last; r++)
                {
                    byte* row = w.Row(r);
                    for (int j = 0; j < 4; j++) Combine(path, (ushort*)(row + k), x.ScaleRow(t + Math.Min(j, count - 1)), blocks, combined + j * blocks);
                    VnniTile1x4(row, blocks, x, t, count, combined, y + (t - t0) * ldy + (r - first), ldy, t == t0 ? w.RowBytes : 0);
                }
            }
            for (; t < t1; t++)
            {
                float* yt = y + (t - t0) * ldy;
                sbyte* xq = x.QuantizedRow(t);
                int* offsets = x.OffsetRow(t);
                float* scales = x.ScaleRow(t);
                for (int r = first; r < last; r++)
                {
                    byte* row = w.Row(r);
                    Combine(path, (ushort*)(row + k), scales, blocks, combined);
                    yt[r - first] = DotVnni(row, blocks, xq, offsets, combined);
                }
            }
            return;
        }
        if (path == KernelPath.Vector256)
        {
            Q8Avx2Kernels.Rows(w, first, last, x, t0, t1, y, ldy);
            return;
        }
        for (; t < t1; t++)
        {
            float* yt = y + (t - t0) * ldy;
            sbyte* xq = x.QuantizedRow(t);
            float* scales = x.ScaleRow(t);
            for (int r = first; r < last; r++)
            {
                byte* row = w.Row(r);
                if (path == KernelPath.Scalar)
                {
                    yt[r - first] = DotScalar(row, blocks, xq, scales);
                    continue;
                }
                Combine(path, (ushort*)(row + k), scales, blocks, combined);
                yt[r - first] = DotAvx512(row, blocks, xq, combined);
            }
        }
    }

    /// <summary>The reference: Σ over blocks of both scales times Σ (stored byte - 128) · q, in order.</summary>
    static float DotScalar(byte* row, int blocks, sbyte* x, float* scales)
    {
        ushort* weightScales = (ushort*)(row + blocks * Block);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            int dot = 0;
            for (int i = 0; i < Block; i++) dot += (row[b * Block + i] - 128) * x[b * Block + i];
            sum += Q8.ScaleToFloat(weightScales[b]) * scales[b] * dot;
        }
        return sum;
    }

    /// <summary>combined[b] = weight scale b (float16, widened) * activation scale b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Combine(KernelPath path, ushort* weightScales, float* scales, int blocks, float* combined)
    {
        int b = 0;
        if (path >= KernelPath.Avx512)
        {
            var bias = Vector512.Create(Q8.HalfBias);
            var mask = Vector512.Create(0x7FFFu);
            for (; b + 16 <= blocks; b += 16)
            {
                var bits = Avx512F.ConvertToVector512UInt32(Avx.LoadVector256(weightScales + b)) & mask;
                (Avx512F.ShiftLeftLogical(bits, 13).AsSingle() * bias * Avx512F.LoadVector512(scales + b)).Store(combined + b);
            }
        }
        else if (path == KernelPath.Vector256)
        {
            var bias = Vector256.Create(Q8.HalfBias);
            for (; b + 8 <= blocks; b += 8)
            {
                var bits = Avx2.ConvertToVector256Int32(weightScales + b) & Vector256.Create(0x7FFF);
                (Avx2.ShiftLeftLogical(bits, 13).AsSingle() * bias * Avx.LoadVector256(scales + b)).Store(combined + b);
            }
        }
        for (; b < blocks; b++) combined[b] = Q8.ScaleToFloat(weightScales[b]) * scales[b];
    }

    /// <summary>One block's 32 products as 8 exact int32 partial sums: vpdpbusd from the activation's offsets.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> BlockVnni(byte* w, sbyte* x, int* offsets) =>
        Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Avx.LoadVector256(offsets), Avx.LoadVector256(w), Avx.LoadVector256(x)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float DotVnni(byte* w, int blocks, sbyte* x, int* offsets, float* combined)
    {
        Vector256<float> a0 = default, a1 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            Sse.Prefetch0(w + b * Block + ProductKernels.PrefetchDistance);
            a0 = Fma.MultiplyAdd(BlockVnni(w + b * Block, x + b * Block, offsets + b * 8), Vector256.Create(combined[b]), a0);
            a1 = Fma.MultiplyAdd(BlockVnni(w + b * Block + Block, x + b * Block + Block, offsets + b * 8 + 8), Vector256.Create(combined[b + 1]), a1);
        }
        if (b < blocks) a0 = Fma.MultiplyAdd(BlockVnni(w + b * Block, x + b * Block, offsets + b * 8), Vector256.Create(combined[b]), a0);
        return Vector256.Sum(a0 + a1);
    }

    /// <summary>One row, four tokens: each block of weights is loaded once for all four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void VnniTile1x4(byte* w, int blocks, in PreparedInput x, int t, int count, float* combined, float* y, long ldy, long ahead)
    {
        int t2 = t + Math.Min(2, count - 1), t3 = t + Math.Min(3, count - 1);
        sbyte* x0 = x.QuantizedRow(t), x1 = x.QuantizedRow(t + 1), x2 = x.QuantizedRow(t2), x3 = x.QuantizedRow(t3);
        int* o0 = x.OffsetRow(t), o1 = x.OffsetRow(t + 1), o2 = x.OffsetRow(t2), o3 = x.OffsetRow(t3);
        float* c0 = combined, c1 = combined + blocks, c2 = combined + 2 * blocks, c3 = combined + 3 * blocks;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++)
        {
            // On the first four tokens the next row is asked for from memory (ahead is its distance, else 0).
            if (ahead != 0 && (b & 1) == 0) Sse.Prefetch0(w + ahead + b * Block);
            var wb = Avx.LoadVector256(w + b * Block);
            int at = b * Block, lanes = b * 8;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Avx.LoadVector256(o0 + lanes), wb, Avx.LoadVector256(x0 + at))), Vector256.Create(c0[b]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Avx.LoadVector256(o1 + lanes), wb, Avx.LoadVector256(x1 + at))), Vector256.Create(c1[b]), a1);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Avx.LoadVector256(o2 + lanes), wb, Avx.LoadVector256(x2 + at))), Vector256.Create(c2[b]), a2);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Avx.LoadVector256(o3 + lanes), wb, Avx.LoadVector256(x3 + at))), Vector256.Create(c3[b]), a3);
        }
        ProductKernels.StoreColumn(ProductKernels.Sum4(a0, a1, a2, a3), y, ldy, count);
    }

    /// <summary>
    /// Two rows, four tokens: each block of weights is loaded once for the four tokens and each block of activations
    /// (and its offsets) once for the two rows. combined holds the four tokens' scales of row A, then of row B.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void VnniTile2x4(byte* wa, byte* wb, int blocks, in PreparedInput x, int t, int count, float* combined, float* y, long ldy, long ahead)
    {
        int t2 = t + Math.Min(2, count - 1), t3 = t + Math.Min(3, count - 1);
        sbyte* x0 = x.QuantizedRow(t), x1 = x.QuantizedRow(t + 1), x2 = x.QuantizedRow(t2), x3 = x.QuantizedRow(t3);
        int* o0 = x.OffsetRow(t), o1 = x.OffsetRow(t + 1), o2 = x.OffsetRow(t2), o3 = x.OffsetRow(t3);
        float* ca = combined, cb = combined + 4 * blocks;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        for (int b = 0; b < blocks; b++)
        {
            // On the first four tokens the next two rows are asked for from memory (ahead is their distance, else 0).
            if (ahead != 0 && (b & 1) == 0)
            {
                Sse.Prefetch0(wa + ahead + b * Block);
                Sse.Prefetch0(wb + ahead + b * Block);
            }
            var va = Avx.LoadVector256(wa + b * Block);
            var vb = Avx.LoadVector256(wb + b * Block);
            int at = b * Block, lanes = b * 8;
            var xv = Avx.LoadVector256(x0 + at);
            var ov = Avx.LoadVector256(o0 + lanes);
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, va, xv)), Vector256.Create(ca[b]), a0);
            b0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, vb, xv)), Vector256.Create(cb[b]), b0);
            xv = Avx.LoadVector256(x1 + at);
            ov = Avx.LoadVector256(o1 + lanes);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, va, xv)), Vector256.Create(ca[blocks + b]), a1);
            b1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, vb, xv)), Vector256.Create(cb[blocks + b]), b1);
            xv = Avx.LoadVector256(x2 + at);
            ov = Avx.LoadVector256(o2 + lanes);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, va, xv)), Vector256.Create(ca[2 * blocks + b]), a2);
            b2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, vb, xv)), Vector256.Create(cb[2 * blocks + b]), b2);
            xv = Avx.LoadVector256(x3 + at);
            ov = Avx.LoadVector256(o3 + lanes);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, va, xv)), Vector256.Create(ca[3 * blocks + b]), a3);
            b3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(ov, vb, xv)), Vector256.Create(cb[3 * blocks + b]), b3);
        }
        ProductKernels.StoreColumn(ProductKernels.Sum4(a0, a1, a2, a3), y, ldy, count);
        ProductKernels.StoreColumn(ProductKernels.Sum4(b0, b1, b2, b3), y + 1, ldy, count);
    }

    /// <summary>Without VNNI: both sides widened to int16 (the weight's bias taken off), then vpmaddwd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float DotAvx512(byte* w, int blocks, sbyte* x, float* combined)
    {
        var bias = Vector512.Create((short)128);
        Vector512<float> a0 = default, a1 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var w0 = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(w + b * Block)) - bias;
            var w1 = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(w + b * Block + Block)) - bias;
            var d0 = Avx512BW.MultiplyAddAdjacent(w0, Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(x + b * Block)));
            var d1 = Avx512BW.MultiplyAddAdjacent(w1, Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(x + b * Block + Block)));
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(d0), Vector512.Create(combined[b]), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(d1), Vector512.Create(combined[b + 1]), a1);
        }
        if (b < blocks)
        {
            var w0 = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(w + b * Block)) - bias;
            var d0 = Avx512BW.MultiplyAddAdjacent(w0, Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(x + b * Block)));
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(d0), Vector512.Create(combined[b]), a0);
        }
        return Vector512.Sum(a0 + a1);
    }
}
