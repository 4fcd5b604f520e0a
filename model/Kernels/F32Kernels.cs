using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// float32 weights against float32 activations. W: [N, K] float32 rows; x: [M, K] float32 as given. Four tokens run
/// as a 2 x 4 register tile (each activation load feeds two rows, each weight load four tokens); one token streams
/// each row through four accumulators.
/// </summary>
[SkipLocalsInit]
static unsafe class F32Kernels
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(KernelPath path, in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        int k = w.Cols;
        int t = t0;
        if (path >= KernelPath.Avx512)
        {
            // Four tokens at a time; two or three left over run as four with the last repeated (each row is still read
            // once for them: an expert's share of a batch is often two or three tokens), only theirs stored.
            for (; t + 1 < t1; t += 4)
            {
                int count = Math.Min(4, t1 - t);
                float* yt = y + (t - t0) * ldy;
                float* x0 = x.Row(t), x1 = x.Row(t + 1), x2 = x.Row(t + Math.Min(2, count - 1)), x3 = x.Row(t + Math.Min(3, count - 1));
                int r = first;
                for (; r + 2 <= last; r += 2)
                    Tile2x4((float*)w.Row(r), (float*)w.Row(r + 1), k, x0, x1, x2, x3, yt + (r - first), ldy, count, t == t0);
                for (; r < last; r++)
                    Tile1x4((float*)w.Row(r), k, x0, x1, x2, x3, yt + (r - first), ldy, count);
            }
            for (; t < t1; t++)
            {
                float* yt = y + (t - t0) * ldy, xt = x.Row(t);
                for (int r = first; r < last; r++) yt[r - first] = DotAvx512((float*)w.Row(r), xt, k);
            }
            return;
        }
        if (path == KernelPath.Vector256)
        {
            for (; t + 1 < t1; t += 4)
            {
                int count = Math.Min(4, t1 - t);
                float* yt = y + (t - t0) * ldy;
                float* x0 = x.Row(t), x1 = x.Row(t + 1), x2 = x.Row(t + Math.Min(2, count - 1)), x3 = x.Row(t + Math.Min(3, count - 1));
                int r = first;
                for (; r + 2 <= last; r += 2)
                    Tile2x4Vector256((float*)w.Row(r), (float*)w.Row(r + 1), k, x0, x1, x2, x3, yt + (r - first), ldy, count, t == t0);
                for (; r < last; r++)
                    Tile1x4Vector256((float*)w.Row(r), k, x0, x1, x2, x3, yt + (r - first), ldy, count);
            }
        }
        for (; t < t1; t++)
        {
            float* yt = y + (t - t0) * ldy, xt = x.Row(t);
            if (path == KernelPath.Vector256)
                for (int r = first; r < last; r++) yt[r - first] = DotVector256((float*)w.Row(r), xt, k);
            else
                for (int r = first; r < last; r++) yt[r - first] = DotScalar((float*)w.Row(r), xt, k);
        }
    }

    static float DotScalar(float* w, float* x, int k)
    {
        float sum = 0;
        for (int i = 0; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float DotAvx512(float* w, float* x, int k)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 64 <= k; i += 64)
        {
            Sse.Prefetch0((byte*)(w + i) + ProductKernels.PrefetchDistance);
            Sse.Prefetch0((byte*)(w + i) + ProductKernels.PrefetchDistance + 64);
            Sse.Prefetch0((byte*)(w + i) + ProductKernels.PrefetchDistance + 128);
            Sse.Prefetch0((byte*)(w + i) + ProductKernels.PrefetchDistance + 192);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w + i), Avx512F.LoadVector512(x + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w + i + 16), Avx512F.LoadVector512(x + i + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w + i + 32), Avx512F.LoadVector512(x + i + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w + i + 48), Avx512F.LoadVector512(x + i + 48), a3);
        }
        for (; i + 16 <= k; i += 16) a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(w + i), Avx512F.LoadVector512(x + i), a0);
        float sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float DotVector256(float* w, float* x, int k)
    {
        Vector256<float> a0 = default, a1 = default;
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            Sse.Prefetch0((byte*)(w + i) + ProductKernels.PrefetchDistance);
            a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), a0);
            a1 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i + 8), Vector256.Load(x + i + 8), a1);
        }
        for (; i + 8 <= k; i += 8) a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), a0);
        float sum = Vector256.Sum(a0 + a1);
        for (; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Tile2x4(float* wa, float* wb, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count, bool fromMemory)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        int i = 0;
        long ahead = 2L * k;
        for (; i + 16 <= k; i += 16)
        {
            // As Bf16Kernels' tile: on the first four tokens the next two rows are asked for from memory.
            if (fromMemory)
            {
                Sse.Prefetch0(wa + ahead + i);
                Sse.Prefetch0(wb + ahead + i);
            }
            var va = Avx512F.LoadVector512(wa + i);
            var vb = Avx512F.LoadVector512(wb + i);
            var xv = Avx512F.LoadVector512(x0 + i);
            a0 = Avx512F.FusedMultiplyAdd(va, xv, a0);
            b0 = Avx512F.FusedMultiplyAdd(vb, xv, b0);
            xv = Avx512F.LoadVector512(x1 + i);
            a1 = Avx512F.FusedMultiplyAdd(va, xv, a1);
            b1 = Avx512F.FusedMultiplyAdd(vb, xv, b1);
            xv = Avx512F.LoadVector512(x2 + i);
            a2 = Avx512F.FusedMultiplyAdd(va, xv, a2);
            b2 = Avx512F.FusedMultiplyAdd(vb, xv, b2);
            xv = Avx512F.LoadVector512(x3 + i);
            a3 = Avx512F.FusedMultiplyAdd(va, xv, a3);
            b3 = Avx512F.FusedMultiplyAdd(vb, xv, b3);
        }
        var sa = ProductKernels.Sum4(a0, a1, a2, a3);
        var sb = ProductKernels.Sum4(b0, b1, b2, b3);
        if (i < k)
        {
            sa += Vector128.Create(DotScalar(wa + i, x0 + i, k - i), DotScalar(wa + i, x1 + i, k - i), DotScalar(wa + i, x2 + i, k - i), DotScalar(wa + i, x3 + i, k - i));
            sb += Vector128.Create(DotScalar(wb + i, x0 + i, k - i), DotScalar(wb + i, x1 + i, k - i), DotScalar(wb + i, x2 + i, k - i), DotScalar(wb + i, x3 + i, k - i));
        }
        ProductKernels.StoreColumn(sa, y, ldy, count);
        ProductKernels.StoreColumn(sb, y + 1, ldy, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Tile1x4(float* w, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            var wv = Avx512F.LoadVector512(w + i);
            a0 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x0 + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x1 + i), a1);
            a2 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x2 + i), a2);
            a3 = Avx512F.FusedMultiplyAdd(wv, Avx512F.LoadVector512(x3 + i), a3);
        }
        var sums = ProductKernels.Sum4(a0, a1, a2, a3);
        if (i < k)
            sums += Vector128.Create(DotScalar(w + i, x0 + i, k - i), DotScalar(w + i, x1 + i, k - i), DotScalar(w + i, x2 + i, k - i), DotScalar(w + i, x3 + i, k - i));
        ProductKernels.StoreColumn(sums, y, ldy, count);
    }

    /// <summary>As <see cref="Tile2x4"/> on 256-bit vectors: 8 accumulators, two weight vectors and an activation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile2x4Vector256(float* wa, float* wb, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count, bool fromMemory)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        int i = 0;
        long ahead = 2L * k;
        for (; i + 8 <= k; i += 8)
        {
            if (fromMemory && (i & 15) == 0)
            {
                Sse.Prefetch0(wa + ahead + i);
                Sse.Prefetch0(wb + ahead + i);
            }
            var va = Vector256.Load(wa + i);
            var vb = Vector256.Load(wb + i);
            var xv = Vector256.Load(x0 + i);
            a0 = Fma.MultiplyAdd(va, xv, a0);
            b0 = Fma.MultiplyAdd(vb, xv, b0);
            xv = Vector256.Load(x1 + i);
            a1 = Fma.MultiplyAdd(va, xv, a1);
            b1 = Fma.MultiplyAdd(vb, xv, b1);
            xv = Vector256.Load(x2 + i);
            a2 = Fma.MultiplyAdd(va, xv, a2);
            b2 = Fma.MultiplyAdd(vb, xv, b2);
            xv = Vector256.Load(x3 + i);
            a3 = Fma.MultiplyAdd(va, xv, a3);
            b3 = Fma.MultiplyAdd(vb, xv, b3);
        }
        var sa = ProductKernels.Sum4(a0, a1, a2, a3);
        var sb = ProductKernels.Sum4(b0, b1, b2, b3);
        if (i < k)
        {
            sa += Vector128.Create(DotScalar(wa + i, x0 + i, k - i), DotScalar(wa + i, x1 + i, k - i), DotScalar(wa + i, x2 + i, k - i), DotScalar(wa + i, x3 + i, k - i));
            sb += Vector128.Create(DotScalar(wb + i, x0 + i, k - i), DotScalar(wb + i, x1 + i, k - i), DotScalar(wb + i, x2 + i, k - i), DotScalar(wb + i, x3 + i, k - i));
        }
        ProductKernels.StoreColumn(sa, y, ldy, count);
        ProductKernels.StoreColumn(sb, y + 1, ldy, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile1x4Vector256(float* w, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 8 <= k; i += 8)
        {
            var wv = Vector256.Load(w + i);
            a0 = Fma.MultiplyAdd(wv, Vector256.Load(x0 + i), a0);
            a1 = Fma.MultiplyAdd(wv, Vector256.Load(x1 + i), a1);
            a2 = Fma.MultiplyAdd(wv, Vector256.Load(x2 + i), a2);
            a3 = Fma.MultiplyAdd(wv, Vector256.Load(x3 + i), a3);
        }
        var sums = ProductKernels.Sum4(a0, a1, a2, a3);
        if (i < k)
            sums += Vector128.Create(DotScalar(w + i, x0 + i, k - i), DotScalar(w + i, x1 + i, k - i), DotScalar(w + i, x2 + i, k - i), DotScalar(w + i, x3 + i, k - i));
        ProductKernels.StoreColumn(sums, y, ldy, count);
    }
}
