using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// bfloat16 weights against float32 activations. W: [N, K] bfloat16 rows as the checkpoint stores them; x: [M, K]
/// float32, on the vector paths each chunk of 32 stored as its 16 even then 16 odd values (see
/// <see cref="MatMul.Prepare"/>), the tail past the last whole chunk as is. A 32-bit lane of W holds weights 2j
/// (low half) and 2j+1 (high half): lane &lt;&lt; 16 and lane &amp; 0xFFFF0000 are those two as float32, against the
/// chunk's even and odd values. Four tokens run as a 2 x 4 register tile; one token streams each row.
/// </summary>
[SkipLocalsInit]
static unsafe class Bf16Kernels
{
    const int Chunk = 32;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(KernelPath path, in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        int k = w.Cols;
        int t = t0;
        if (path >= KernelPath.Avx512)
        {
            // Four tokens at a time; two or three left over run as four with the last repeated (each row is still read
            // once for them: an expert's share of a batch is often two or three tokens), only theirs stored.
            int r = first;
            if (k % Chunk == 0 && t + 1 < t1)
            {
                // Blocks of four rows, each against every group of four tokens before the next block: while a block
                // is multiplied from the cache the next one streams in (asked for on the first group), where walking
                // every row for one group first left the first group to wait on memory alone. On the 2-core VM:
                // a bench-moe layer's experts at 128 tokens 184-236 against 178-217 GFLOP/s by round, `generate`'s
                // 128-token prefill 1151-1319 against 860-1222 tok/s in 8 alternated pairs (7 won).
                for (; r + 4 <= last; r += 4)
                {
                    for (t = t0; t + 1 < t1; t += 4)
                    {
                        int count = Math.Min(4, t1 - t);
                        float* x0 = x.Row(t), x1 = x.Row(t + 1), x2 = x.Row(t + Math.Min(2, count - 1)), x3 = x.Row(t + Math.Min(3, count - 1));
                        Tile4x4((ushort*)w.Row(r), w.RowBytes / 2, k, x0, x1, x2, x3, y + (t - t0) * ldy + (r - first), ldy, count, t == t0 ? 4 * w.RowBytes / 2 : 0);
                    }
                }
            }
            int rest = r;
            for (t = t0; t + 1 < t1; t += 4)
            {
                int count = Math.Min(4, t1 - t);
                float* yt = y + (t - t0) * ldy;
                float* x0 = x.Row(t), x1 = x.Row(t + 1), x2 = x.Row(t + Math.Min(2, count - 1)), x3 = x.Row(t + Math.Min(3, count - 1));
                for (r = rest; r + 2 <= last; r += 2)
                    Tile2x4((ushort*)w.Row(r), (ushort*)w.Row(r + 1), k, x0, x1, x2, x3, yt + (r - first), ldy, count, t == t0);
                for (; r < last; r++)
                    Tile1x4((ushort*)w.Row(r), k, x0, x1, x2, x3, yt + (r - first), ldy, count);
            }
            for (; t < t1; t++)
            {
                float* yt = y + (t - t0) * ldy, xt = x.Row(t);
                for (r = first; r < last; r++) yt[r - first] = DotAvx512((ushort*)w.Row(r), k, xt);
            }
            return;
        }
        if (path == KernelPath.Vector256)
        {
            Bf16Avx2Kernels.Rows(w, first, last, x, t0, t1, y, ldy);
            return;
        }
        for (; t < t1; t++)
        {
            float* yt = y + (t - t0) * ldy, xt = x.Row(t);
            for (int r = first; r < last; r++) yt[r - first] = Tail((ushort*)w.Row(r), xt, 0, k);
        }
    }

    static float ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Σ w[i] x[i] for i in [from, k), in order, unpermuted: the scalar path, and the tail of the others.</summary>
    internal static float Tail(ushort* w, float* x, int from, int k)
    {
        float sum = 0;
        for (int i = from; i < k; i++) sum += ToFloat(w[i]) * x[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float DotAvx512(ushort* w, int k, float* x)
    {
        var high = Vector512.Create(0xFFFF0000u);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int chunks = k / Chunk, c = 0;
        for (; c + 2 <= chunks; c += 2)
        {
            Sse.Prefetch0((byte*)(w + c * Chunk) + ProductKernels.PrefetchDistance);
            Sse.Prefetch0((byte*)(w + c * Chunk) + ProductKernels.PrefetchDistance + 64);
            var l0 = Avx512F.LoadVector512((uint*)(w + c * Chunk));
            var l1 = Avx512F.LoadVector512((uint*)(w + c * Chunk + Chunk));
            float* xc = x + c * Chunk;
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(l0, 16).AsSingle(), Avx512F.LoadVector512(xc), a0);
            a1 = Avx512F.FusedMultiplyAdd((l0 & high).AsSingle(), Avx512F.LoadVector512(xc + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(l1, 16).AsSingle(), Avx512F.LoadVector512(xc + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd((l1 & high).AsSingle(), Avx512F.LoadVector512(xc + 48), a3);
        }
        if (c < chunks)
        {
            var l0 = Avx512F.LoadVector512((uint*)(w + c * Chunk));
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(l0, 16).AsSingle(), Avx512F.LoadVector512(x + c * Chunk), a0);
            a1 = Avx512F.FusedMultiplyAdd((l0 & high).AsSingle(), Avx512F.LoadVector512(x + c * Chunk + 16), a1);
        }
        float sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        return chunks * Chunk == k ? sum : sum + Tail(w, x, chunks * Chunk, k);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Tile2x4(ushort* wa, ushort* wb, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count, bool fromMemory)
    {
        var high = Vector512.Create(0xFFFF0000u);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        int chunks = k / Chunk;
        // On the first four tokens the rows come from memory: the next two stream in while these two are multiplied
        // (27% more on a bench-moe prefill's experts); later tokens find them in the cache, where asking costs 10%.
        long ahead = 2L * k;
        for (int c = 0; c < chunks * Chunk; c += Chunk)
        {
            if (fromMemory)
            {
                Sse.Prefetch0(wa + ahead + c);
                Sse.Prefetch0(wb + ahead + c);
            }
            var la = Avx512F.LoadVector512((uint*)(wa + c));
            var lb = Avx512F.LoadVector512((uint*)(wb + c));
            var ea = Avx512F.ShiftLeftLogical(la, 16).AsSingle();
            var oa = (la & high).AsSingle();
            var eb = Avx512F.ShiftLeftLogical(lb, 16).AsSingle();
            var ob = (lb & high).AsSingle();
            var xe = Avx512F.LoadVector512(x0 + c);
            var xo = Avx512F.LoadVector512(x0 + c + 16);
            a0 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a0));
            b0 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b0));
            xe = Avx512F.LoadVector512(x1 + c);
            xo = Avx512F.LoadVector512(x1 + c + 16);
            a1 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a1));
            b1 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b1));
            xe = Avx512F.LoadVector512(x2 + c);
            xo = Avx512F.LoadVector512(x2 + c + 16);
            a2 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a2));
            b2 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b2));
            xe = Avx512F.LoadVector512(x3 + c);
            xo = Avx512F.LoadVector512(x3 + c + 16);
            a3 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a3));
            b3 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b3));
        }
        var sa = ProductKernels.Sum4(a0, a1, a2, a3);
        var sb = ProductKernels.Sum4(b0, b1, b2, b3);
        int tail = chunks * Chunk;
        if (tail < k)
        {
            sa += Vector128.Create(Tail(wa, x0, tail, k), Tail(wa, x1, tail, k), Tail(wa, x2, tail, k), Tail(wa, x3, tail, k));
            sb += Vector128.Create(Tail(wb, x0, tail, k), Tail(wb, x1, tail, k), Tail(wb, x2, tail, k), Tail(wb, x3, tail, k));
        }
        ProductKernels.StoreColumn(sa, y, ldy, count);
        ProductKernels.StoreColumn(sb, y + 1, ldy, count);
    }

    /// <summary>
    /// Four rows (stride apart) by four tokens: every weight load feeds four tokens, every activation load four rows
    /// (30% more than two rows by four from cache, 28% on the LM head of 16 streams). On the first tokens
    /// <paramref name="ahead"/> (else 0) is how far on the next four rows are asked for.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile4x4(ushort* w, long stride, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count, long ahead)
    {
        var high = Vector512.Create(0xFFFF0000u);
        ushort* wa = w, wb = w + stride, wc = w + 2 * stride, wd = w + 3 * stride;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
        for (int c = 0; c < k; c += Chunk)
        {
            if (ahead != 0)
            {
                Sse.Prefetch0(wa + ahead + c);
                Sse.Prefetch0(wb + ahead + c);
                Sse.Prefetch0(wc + ahead + c);
                Sse.Prefetch0(wd + ahead + c);
            }
            var la = Avx512F.LoadVector512((uint*)(wa + c));
            var lb = Avx512F.LoadVector512((uint*)(wb + c));
            var lc = Avx512F.LoadVector512((uint*)(wc + c));
            var ld = Avx512F.LoadVector512((uint*)(wd + c));
            var ea = Avx512F.ShiftLeftLogical(la, 16).AsSingle();
            var oa = (la & high).AsSingle();
            var eb = Avx512F.ShiftLeftLogical(lb, 16).AsSingle();
            var ob = (lb & high).AsSingle();
            var ec = Avx512F.ShiftLeftLogical(lc, 16).AsSingle();
            var oc = (lc & high).AsSingle();
            var ed = Avx512F.ShiftLeftLogical(ld, 16).AsSingle();
            var od = (ld & high).AsSingle();
            var xe = Avx512F.LoadVector512(x0 + c);
            var xo = Avx512F.LoadVector512(x0 + c + 16);
            a0 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a0));
            b0 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b0));
            c0 = Avx512F.FusedMultiplyAdd(oc, xo, Avx512F.FusedMultiplyAdd(ec, xe, c0));
            d0 = Avx512F.FusedMultiplyAdd(od, xo, Avx512F.FusedMultiplyAdd(ed, xe, d0));
            xe = Avx512F.LoadVector512(x1 + c);
            xo = Avx512F.LoadVector512(x1 + c + 16);
            a1 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a1));
            b1 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b1));
            c1 = Avx512F.FusedMultiplyAdd(oc, xo, Avx512F.FusedMultiplyAdd(ec, xe, c1));
            d1 = Avx512F.FusedMultiplyAdd(od, xo, Avx512F.FusedMultiplyAdd(ed, xe, d1));
            xe = Avx512F.LoadVector512(x2 + c);
            xo = Avx512F.LoadVector512(x2 + c + 16);
            a2 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a2));
            b2 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b2));
            c2 = Avx512F.FusedMultiplyAdd(oc, xo, Avx512F.FusedMultiplyAdd(ec, xe, c2));
            d2 = Avx512F.FusedMultiplyAdd(od, xo, Avx512F.FusedMultiplyAdd(ed, xe, d2));
            xe = Avx512F.LoadVector512(x3 + c);
            xo = Avx512F.LoadVector512(x3 + c + 16);
            a3 = Avx512F.FusedMultiplyAdd(oa, xo, Avx512F.FusedMultiplyAdd(ea, xe, a3));
            b3 = Avx512F.FusedMultiplyAdd(ob, xo, Avx512F.FusedMultiplyAdd(eb, xe, b3));
            c3 = Avx512F.FusedMultiplyAdd(oc, xo, Avx512F.FusedMultiplyAdd(ec, xe, c3));
            d3 = Avx512F.FusedMultiplyAdd(od, xo, Avx512F.FusedMultiplyAdd(ed, xe, d3));
        }
        ProductKernels.StoreColumn(ProductKernels.Sum4(a0, a1, a2, a3), y, ldy, count);
        ProductKernels.StoreColumn(ProductKernels.Sum4(b0, b1, b2, b3), y + 1, ldy, count);
        ProductKernels.StoreColumn(ProductKernels.Sum4(c0, c1, c2, c3), y + 2, ldy, count);
        ProductKernels.StoreColumn(ProductKernels.Sum4(d0, d1, d2, d3), y + 3, ldy, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Tile1x4(ushort* w, int k, float* x0, float* x1, float* x2, float* x3, float* y, long ldy, int count)
    {
        var high = Vector512.Create(0xFFFF0000u);
        Vector512<float> e0 = default, o0 = default, e1 = default, o1 = default, e2 = default, o2 = default, e3 = default, o3 = default;
        int chunks = k / Chunk;
        for (int c = 0; c < chunks * Chunk; c += Chunk)
        {
            var lanes = Avx512F.LoadVector512((uint*)(w + c));
            var even = Avx512F.ShiftLeftLogical(lanes, 16).AsSingle();
            var odd = (lanes & high).AsSingle();
            e0 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x0 + c), e0);
            o0 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x0 + c + 16), o0);
            e1 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x1 + c), e1);
            o1 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x1 + c + 16), o1);
            e2 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x2 + c), e2);
            o2 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x2 + c + 16), o2);
            e3 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x3 + c), e3);
            o3 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x3 + c + 16), o3);
        }
        var sums = ProductKernels.Sum4(e0 + o0, e1 + o1, e2 + o2, e3 + o3);
        int tail = chunks * Chunk;
        if (tail < k) sums += Vector128.Create(Tail(w, x0, tail, k), Tail(w, x1, tail, k), Tail(w, x2, tail, k), Tail(w, x3, tail, k));
        ProductKernels.StoreColumn(sums, y, ldy, count);
    }
}
