using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Q8_0 weights interleaved eight rows at a time (<see cref="WeightFormat.Q8_0x8"/>) against Q8 activations. A block
/// of a group holds 8 runs of 32 bytes: run q is, for each of the 8 rows, that row's 4 values 4q .. 4q+3 (stored +128),
/// then the 8 rows' float16 scales. One <c>vpdpbusd</c> of a run against the activation's 4 values at 4q, broadcast,
/// adds 4 products to each row's lane, so after the 8 runs (started at the block's -128 Σx, <see cref="PreparedInput.BlockSums"/>)
/// each lane holds its row's exact block dot product; one convert and one multiply-add by the 8 scales times the
/// activation's scale then serve 8 rows, and the 8 sums are stored as they are, with no reduction across lanes.
/// Without VNNI (AVX2) <see cref="Q8x8Avx2Kernels"/> reads the same layout.
/// </summary>
[SkipLocalsInit]
static unsafe class Q8x8Kernels
{
    const int Block = WeightFormats.Q8Block;
    const int BlockBytes = 8 * WeightFormats.Q8BlockBytes;

    /// <summary>Rows [first, last) (multiples of 8) of an interleaved matrix against tokens [t0, t1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(KernelPath path, in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        if (first % 8 != 0 || last % 8 != 0) throw new ArgumentException($"Interleaved Q8_0 rows come in eights, not [{first}, {last}).");
        int blocks = w.Cols / Block;
        if (path == KernelPath.Vector256)
        {
            Q8x8Avx2Kernels.Rows(w, first, last, x, t0, t1, y, ldy);
            return;
        }
        if (path != KernelPath.Avx512Vnni)
        {
            for (int t = t0; t < t1; t++)
            {
                for (int r = first; r < last; r++) y[(t - t0) * ldy + r - first] = DotScalar(w, r, blocks, x, t);
            }
            return;
        }
        // Blocks of four groups (32 rows), each against every pair of tokens before the next block: the first pair
        // streams the block in and the others find it in the cache. Walking every block for one pair first read each
        // block from memory with only that pair's work to hide it (a bench-moe layer's experts at 128 tokens, from
        // memory, on the 2-core VM: 308-353 against 243-246 GFLOP/s).
        int g4 = first / 8;
        for (; g4 + 4 <= last / 8; g4 += 4)
        {
            for (int t = t0; t + 1 < t1; t += 2)
            {
                Groups4x2(w.Group(g4), 8 * w.RowBytes, blocks, x, t, y + (t - t0) * ldy + 8 * g4 - first, ldy, t == t0);
            }
        }
        for (int t = t0; t < t1; t += 2)
        {
            float* yt = y + (t - t0) * ldy;
            if (t + 1 < t1)
            {
                for (int g = g4; g < last / 8; g++) Group2(w.Group(g), blocks, x, t, yt + 8 * g - first, ldy, t == t0);
            }
            else
            {
                for (int g = first / 8; g < last / 8; g++) Group1(w.Group(g), blocks, x, t, yt + 8 * g - first);
            }
        }
    }

    /// <summary>The reference: row r's Σ over blocks of both scales times Σ (stored byte - 128) · q, in order.</summary>
    static float DotScalar(in WeightView w, int r, int blocks, in PreparedInput x, int t)
    {
        byte* group = w.Group(r / 8);
        int lane = r % 8;
        sbyte* q = x.QuantizedRow(t);
        float* scales = x.ScaleRow(t);
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* block = group + b * BlockBytes;
            int dot = 0;
            for (int i = 0; i < Block; i++) dot += (block[i / 4 * 32 + lane * 4 + i % 4] - 128) * q[b * Block + i];
            sum += Q8.ScaleToFloat(((ushort*)(block + 256))[lane]) * scales[b] * dot;
        }
        return sum;
    }

    /// <summary>The 8 rows' float16 scales of a block as float32 (the bit shift <see cref="Q8.HalfBias"/> explains).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Scales(byte* block)
    {
        var bits = Avx2.ConvertToVector256Int32((ushort*)(block + 256)) & Vector256.Create(0x7FFF);
        return Avx2.ShiftLeftLogical(bits, 13).AsSingle() * Vector256.Create(Q8.HalfBias);
    }

    /// <summary>A block's 8 runs against one token's 32 values: each lane its row's exact dot product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> BlockDot(byte* block, int* x, int start)
    {
        // Two chains, so the multiply-adds overlap.
        var a = AvxVnni.MultiplyWideningAndAdd(Vector256.Create(start), Avx.LoadVector256(block), Vector256.Create(x[0]).AsSByte());
        var b = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx.LoadVector256(block + 32), Vector256.Create(x[1]).AsSByte());
        a = AvxVnni.MultiplyWideningAndAdd(a, Avx.LoadVector256(block + 64), Vector256.Create(x[2]).AsSByte());
        b = AvxVnni.MultiplyWideningAndAdd(b, Avx.LoadVector256(block + 96), Vector256.Create(x[3]).AsSByte());
        a = AvxVnni.MultiplyWideningAndAdd(a, Avx.LoadVector256(block + 128), Vector256.Create(x[4]).AsSByte());
        b = AvxVnni.MultiplyWideningAndAdd(b, Avx.LoadVector256(block + 160), Vector256.Create(x[5]).AsSByte());
        a = AvxVnni.MultiplyWideningAndAdd(a, Avx.LoadVector256(block + 192), Vector256.Create(x[6]).AsSByte());
        b = AvxVnni.MultiplyWideningAndAdd(b, Avx.LoadVector256(block + 224), Vector256.Create(x[7]).AsSByte());
        return a + b;
    }

    /// <summary>One group of 8 rows, one token: y[0..8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Group1(byte* group, int blocks, in PreparedInput x, int t, float* y)
    {
        int* xq = (int*)x.QuantizedRow(t);
        int* sums = x.BlockSumRow(t);
        float* dx = x.ScaleRow(t);
        Vector256<float> a0 = default, a1 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            byte* block = group + b * BlockBytes;
            for (int line = 0; line < 2 * BlockBytes; line += 64) Sse.Prefetch0(block + ProductKernels.PrefetchDistance + line);
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot(block, xq + b * 8, sums[b])), Scales(block) * Vector256.Create(dx[b]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot(block + BlockBytes, xq + b * 8 + 8, sums[b + 1])),
                Scales(block + BlockBytes) * Vector256.Create(dx[b + 1]), a1);
        }
        if (b < blocks)
        {
            byte* block = group + b * BlockBytes;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot(block, xq + b * 8, sums[b])), Scales(block) * Vector256.Create(dx[b]), a0);
        }
        (a0 + a1).Store(y);
    }

    /// <summary>
    /// Four groups of 8 rows (<paramref name="stride"/> apart), two tokens: each run's activation values are broadcast
    /// once for all four groups, and each run of weights is read once for both tokens, so a block takes 6 loads per
    /// 8 <c>vpdpbusd</c> where <see cref="Group2"/> takes 29 per 16. Eight independent sums per block; each lane's
    /// float sum is accumulated block after block exactly as <see cref="Group2"/> accumulates it. On the 2-core Zen 5
    /// VM, against four <see cref="Group2"/> calls: a 1536-row product of 128 tokens 427 against 322 GFLOP/s, a
    /// bench-moe layer's experts at 128 tokens 6.0 against 7.2 ms, the 16-row int8 LM head 13.3 against 15.7 ms.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Groups4x2(byte* group, long stride, int blocks, in PreparedInput x, int t, float* y, long ldy, bool fromMemory)
    {
        int* x0 = (int*)x.QuantizedRow(t), x1 = (int*)x.QuantizedRow(t + 1);
        int* s0 = x.BlockSumRow(t), s1 = x.BlockSumRow(t + 1);
        float* d0 = x.ScaleRow(t), d1 = x.ScaleRow(t + 1);
        byte* g0 = group, g1 = group + stride, g2 = group + 2 * stride, g3 = group + 3 * stride;
        Vector256<float> f00 = default, f01 = default, f10 = default, f11 = default, f20 = default, f21 = default, f30 = default, f31 = default;
        // From memory the four groups stream in side by side: each is asked for Ahead blocks before it is read, and the
        // last blocks ask for the start of the next four groups (read next), so the stream does not stall between calls.
        const int Ahead = 4;
        if (fromMemory)
        {
            for (int b = 0; b < Math.Min(Ahead, blocks); b++)
            {
                AskBlock(g0 + b * BlockBytes);
                AskBlock(g1 + b * BlockBytes);
                AskBlock(g2 + b * BlockBytes);
                AskBlock(g3 + b * BlockBytes);
            }
        }
        for (int b = 0; b < blocks; b++)
        {
            long o = (long)b * BlockBytes;
            if (fromMemory)
            {
                long ahead = o + Ahead * BlockBytes + (b + Ahead >= blocks ? 3 * stride : 0);
                AskBlock(g0 + ahead);
                AskBlock(g1 + ahead);
                AskBlock(g2 + ahead);
                AskBlock(g3 + ahead);
            }
            var start0 = Vector256.Create(s0[b]);
            var start1 = Vector256.Create(s1[b]);
            Vector256<int> a00 = start0, a01 = start1, a10 = start0, a11 = start1, a20 = start0, a21 = start1, a30 = start0, a31 = start1;
            int* xb0 = x0 + b * 8, xb1 = x1 + b * 8;
            for (int q = 0; q < 8; q++)
            {
                var v0 = Vector256.Create(xb0[q]).AsSByte();
                var v1 = Vector256.Create(xb1[q]).AsSByte();
                long run = o + q * 32;
                var w = Avx.LoadVector256(g0 + run);
                a00 = AvxVnni.MultiplyWideningAndAdd(a00, w, v0);
                a01 = AvxVnni.MultiplyWideningAndAdd(a01, w, v1);
                w = Avx.LoadVector256(g1 + run);
                a10 = AvxVnni.MultiplyWideningAndAdd(a10, w, v0);
                a11 = AvxVnni.MultiplyWideningAndAdd(a11, w, v1);
                w = Avx.LoadVector256(g2 + run);
                a20 = AvxVnni.MultiplyWideningAndAdd(a20, w, v0);
                a21 = AvxVnni.MultiplyWideningAndAdd(a21, w, v1);
                w = Avx.LoadVector256(g3 + run);
                a30 = AvxVnni.MultiplyWideningAndAdd(a30, w, v0);
                a31 = AvxVnni.MultiplyWideningAndAdd(a31, w, v1);
            }
            var e0 = Vector256.Create(d0[b]);
            var e1 = Vector256.Create(d1[b]);
            var scales = Scales(g0 + o);
            f00 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a00), scales * e0, f00);
            f01 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a01), scales * e1, f01);
            scales = Scales(g1 + o);
            f10 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a10), scales * e0, f10);
            f11 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a11), scales * e1, f11);
            scales = Scales(g2 + o);
            f20 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a20), scales * e0, f20);
            f21 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a21), scales * e1, f21);
            scales = Scales(g3 + o);
            f30 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a30), scales * e0, f30);
            f31 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a31), scales * e1, f31);
        }
        f00.Store(y);
        f01.Store(y + ldy);
        f10.Store(y + 8);
        f11.Store(y + ldy + 8);
        f20.Store(y + 16);
        f21.Store(y + ldy + 16);
        f30.Store(y + 24);
        f31.Store(y + ldy + 24);
    }

    /// <summary>Asks for the 272 bytes of one block at <paramref name="at"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void AskBlock(byte* at)
    {
        Sse.Prefetch0(at);
        Sse.Prefetch0(at + 64);
        Sse.Prefetch0(at + 128);
        Sse.Prefetch0(at + 192);
        Sse.Prefetch0(at + 256);
    }

    /// <summary>One group of 8 rows, two tokens: each block's runs are read once (from the cache the second time) for both.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Group2(byte* group, int blocks, in PreparedInput x, int t, float* y, long ldy, bool fromMemory)
    {
        int* x0 = (int*)x.QuantizedRow(t), x1 = (int*)x.QuantizedRow(t + 1);
        int* s0 = x.BlockSumRow(t), s1 = x.BlockSumRow(t + 1);
        float* d0 = x.ScaleRow(t), d1 = x.ScaleRow(t + 1);
        Vector256<float> a0 = default, a1 = default;
        for (int b = 0; b < blocks; b++)
        {
            byte* block = group + b * BlockBytes;
            // On the first two tokens the group comes from memory: what follows it is asked for as it is read.
            if (fromMemory) AskBlock(block + ProductKernels.PrefetchDistance);
            var scales = Scales(block);
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot(block, x0 + b * 8, s0[b])), scales * Vector256.Create(d0[b]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(BlockDot(block, x1 + b * 8, s1[b])), scales * Vector256.Create(d1[b]), a1);
        }
        a0.Store(y);
        a1.Store(y + ldy);
    }
}
