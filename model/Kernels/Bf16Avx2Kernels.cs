using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// bfloat16 weights against float32 activations on 256-bit vectors (AVX2 and FMA): the layout of
/// <see cref="Bf16Kernels"/> read in halves of 16 weights. Lanes 0-7 of a half hold weights 2j and 2j+1 of it: as
/// float32 (lane &lt;&lt; 16, lane &amp; 0xFFFF0000) they meet the chunk's evens at x[8h, 8h+8) and its odds at
/// x[16 + 8h, 16 + 8h + 8). Four tokens run as a 2 x 4 register tile (8 accumulators, 4 weight vectors and the
/// activations: what 16 registers hold); one token streams each row through four accumulators.
/// </summary>
[SkipLocalsInit]
static unsafe class Bf16Avx2Kernels
{
    const int Chunk = 32;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        int k = w.Cols;
        int t = t0;
        // Four tokens at a time; two or three left over run as four with the last repeated, only theirs stored.
        for (; t + 1 < t1; t += 4)
        {
            int count = Math.Min(4, t1 - t);
            float* yt = y + (t - t0) * ldy;
            float* x0 = x.Row(t), x1 = x.Row(t + 1), x2 = x.Row(t + Math.Min(2, count - 1)), x3 = x.Row(t + Math.Min(3, count - 1));
            int r = first;
            for (; r + 2 <= last; r += 2)
                Tile2x4((ushort*)w.Row(r), (ushort*)w.Row(r + 1), k, x0, x1, x2, x3, yt + (r - first), ldy, count, t == t0);
            for (; r < last; r++)
                Tile1x4((ushort*)w.Row(r), k, x0, x1, x2, x3, yt + (r - first), ldy, count);
        }
        for (; t < t1; t++)
        {
            float* yt = y + (t - t0) * ldy, xt = x.Row(t);
            for (int r = first; r < last; r++) yt[r - first] = Dot((ushort*)w.Row(r), k, xt);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(ushort* w, int k, float* x)
    {
        var high = Vector256.Create(0xFFFF0000u);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int chunks = k / Chunk;
        for (int c = 0; c < chunks; c++)
        {
            Sse.Prefetch0((byte*)(w + c * Chunk) + ProductKernels.PrefetchDistance);
            // Lanes 0-7 hold weights 0-15 of the chunk, lanes 8-15 weights 16-31: evens at x[0..16), odds at x[16..32).
            var lo = Vector256.Load((uint*)(w + c * Chunk));
            var hi = Vector256.Load((uint*)(w + c * Chunk + 16));
            float* xc = x + c * Chunk;
            a0 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(lo, 16).AsSingle(), Vector256.Load(xc), a0);
            a1 = Fma.MultiplyAdd((lo & high).AsSingle(), Vector256.Load(xc + 16), a1);
            a2 = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(hi, 16).AsSingle(), Vector256.Load(xc + 8), a2);
            a3 = Fma.MultiplyAdd((hi & high).AsSingle(), Vector256.Load(xc + 24), a3);
        }
        float sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        return chunks * Chunk == k ? sum : sum + Bf16Kernels.Tail(w, x, chunks * Chunk, k);
    }

    /// <summary>
    /// Two rows by four tokens, a half chunk at a time. On the first four tokens the rows come from memory and the
    /// next two are asked for as these are read (<paramref name="fromMemory"/>); later tokens find them in the cache.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile2x4(ushort* wa, ushort* wb, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count, bool fromMemory)
    {
        var high = Vector256.Create(0xFFFF0000u);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        int chunks = k / Chunk;
        long ahead = 2L * k;
        for (int c = 0; c < chunks * Chunk; c += Chunk)
        {
            if (fromMemory)
            {
                Sse.Prefetch0(wa + ahead + c);
                Sse.Prefetch0(wb + ahead + c);
            }
            for (int h = 0; h < 2; h++)
            {
                var la = Vector256.Load((uint*)(wa + c + 16 * h));
                var lb = Vector256.Load((uint*)(wb + c + 16 * h));
                var ea = Avx2.ShiftLeftLogical(la, 16).AsSingle();
                var oa = (la & high).AsSingle();
                var eb = Avx2.ShiftLeftLogical(lb, 16).AsSingle();
                var ob = (lb & high).AsSingle();
                int even = c + 8 * h, odd = c + 16 + 8 * h;
                var xe = Vector256.Load(x0 + even);
                var xo = Vector256.Load(x0 + odd);
                a0 = Fma.MultiplyAdd(oa, xo, Fma.MultiplyAdd(ea, xe, a0));
                b0 = Fma.MultiplyAdd(ob, xo, Fma.MultiplyAdd(eb, xe, b0));
                xe = Vector256.Load(x1 + even);
                xo = Vector256.Load(x1 + odd);
                a1 = Fma.MultiplyAdd(oa, xo, Fma.MultiplyAdd(ea, xe, a1));
                b1 = Fma.MultiplyAdd(ob, xo, Fma.MultiplyAdd(eb, xe, b1));
                xe = Vector256.Load(x2 + even);
                xo = Vector256.Load(x2 + odd);
                a2 = Fma.MultiplyAdd(oa, xo, Fma.MultiplyAdd(ea, xe, a2));
                b2 = Fma.MultiplyAdd(ob, xo, Fma.MultiplyAdd(eb, xe, b2));
                xe = Vector256.Load(x3 + even);
                xo = Vector256.Load(x3 + odd);
                a3 = Fma.MultiplyAdd(oa, xo, Fma.MultiplyAdd(ea, xe, a3));
                b3 = Fma.MultiplyAdd(ob, xo, Fma.MultiplyAdd(eb, xe, b3));
            }
        }
        var sa = ProductKernels.Sum4(a0, a1, a2, a3);
        var sb = ProductKernels.Sum4(b0, b1, b2, b3);
        int tail = chunks * Chunk;
        if (tail < k)
        {
            sa += Vector128.Create(Bf16Kernels.Tail(wa, x0, tail, k), Bf16Kernels.Tail(wa, x1, tail, k), Bf16Kernels.Tail(wa, x2, tail, k), Bf16Kernels.Tail(wa, x3, tail, k));
            sb += Vector128.Create(Bf16Kernels.Tail(wb, x0, tail, k), Bf16Kernels.Tail(wb, x1, tail, k), Bf16Kernels.Tail(wb, x2, tail, k), Bf16Kernels.Tail(wb, x3, tail, k));
        }
        ProductKernels.StoreColumn(sa, y, ldy, count);
        ProductKernels.StoreColumn(sb, y + 1, ldy, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile1x4(ushort* w, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count)
    {
        var high = Vector256.Create(0xFFFF0000u);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int chunks = k / Chunk;
        for (int c = 0; c < chunks * Chunk; c += Chunk)
        {
            for (int h = 0; h < 2; h++)
            {
                var lanes = Vector256.Load((uint*)(w + c + 16 * h));
                var even = Avx2.ShiftLeftLogical(lanes, 16).AsSingle();
                var odd = (lanes & high).AsSingle();
                int e = c + 8 * h, o = c + 16 + 8 * h;
                a0 = Fma.MultiplyAdd(odd, Vector256.Load(x0 + o), Fma.MultiplyAdd(even, Vector256.Load(x0 + e), a0));
                a1 = Fma.MultiplyAdd(odd, Vector256.Load(x1 + o), Fma.MultiplyAdd(even, Vector256.Load(x1 + e), a1));
                a2 = Fma.MultiplyAdd(odd, Vector256.Load(x2 + o), Fma.MultiplyAdd(even, Vector256.Load(x2 + e), a2));
                a3 = Fma.MultiplyAdd(odd, Vector256.Load(x3 + o), Fma.MultiplyAdd(even, Vector256.Load(x3 + e), a3));
            }
        }
        var sums = ProductKernels.Sum4(a0, a1, a2, a3);
        int tail = chunks * Chunk;
        if (tail < k)
            sums += Vector128.Create(Bf16Kernels.Tail(w, x0, tail, k), Bf16Kernels.Tail(w, x1, tail, k), Bf16Kernels.Tail(w, x2, tail, k), Bf16Kernels.Tail(w, x3, tail, k));
        ProductKernels.StoreColumn(sums, y, ldy, count);
    }
}
