using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// The dot products of one weight row with up to four prepared activation rows, per format and path:
/// <c>dots[t] = W[row] · x[t]</c>. The weight row is read once for all of them; a batch of tokens costs one pass
/// over the weights. Scalar is the reference every vector path is tested against.
/// </summary>
[SkipLocalsInit]
public static unsafe class RowKernels
{
    public const int MaxTokens = 4;
    const int Chunk = 32;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dots(KernelPath path, WeightFormat format, byte* row, int k, in PreparedInput x, int firstToken, int tokens, float* dots)
    {
        switch (format)
        {
            case WeightFormat.F32: F32(path, (float*)row, k, x, firstToken, tokens, dots); break;
            case WeightFormat.BF16: Bf16(path, (ushort*)row, k, x, firstToken, tokens, dots); break;
            case WeightFormat.Q8_0: Q8_0(path, row, k, x, firstToken, tokens, dots); break;
            default: throw new ArgumentOutOfRangeException(nameof(format));
        }
    }

    /// <summary>
    /// Two rows against the same tokens: <c>dotsA[t] = A · x[t]</c>, <c>dotsB[t] = B · x[t]</c>. Four tokens of bfloat16 or
    /// float32 weights run as a 2 x 4 register tile (every activation load feeds two rows), about a third more
    /// products per cycle than one row at a time; anything else is two calls of <see cref="Dots"/>.
    /// </summary>
    public static void DotsPair(KernelPath path, WeightFormat format, byte* rowA, byte* rowB, int k, in PreparedInput x, int firstToken,
        int tokens, float* dotsA, float* dotsB)
    {
        if (path == KernelPath.Avx512 && tokens == 4 && k % Chunk == 0)
        {
            if (format == WeightFormat.BF16)
            {
                Bf16Avx512Tile((ushort*)rowA, (ushort*)rowB, k, x, firstToken, dotsA, dotsB);
                return;
            }
            if (format == WeightFormat.F32)
            {
                F32Avx512Tile((float*)rowA, (float*)rowB, k, x, firstToken, dotsA, dotsB);
                return;
            }
        }
        Dots(path, format, rowA, k, x, firstToken, tokens, dotsA);
        Dots(path, format, rowB, k, x, firstToken, tokens, dotsB);
    }

    /// <summary>The sums of four vectors' lanes, [Σa, Σb, Σc, Σd]: halvings, then two rounds of pairwise adds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Sum4(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var a8 = a.GetLower() + a.GetUpper();
        var b8 = b.GetLower() + b.GetUpper();
        var c8 = c.GetLower() + c.GetUpper();
        var d8 = d.GetLower() + d.GetUpper();
        var ab = Sse3.HorizontalAdd(a8.GetLower() + a8.GetUpper(), b8.GetLower() + b8.GetUpper());
        var cd = Sse3.HorizontalAdd(c8.GetLower() + c8.GetUpper(), d8.GetLower() + d8.GetUpper());
        return Sse3.HorizontalAdd(ab, cd);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Bf16Avx512Tile(ushort* wa, ushort* wb, int k, in PreparedInput x, int first, float* dotsA, float* dotsB)
    {
        var high = Vector512.Create(0xFFFF0000u);
        float* x0 = x.Row(first), x1 = x.Row(first + 1), x2 = x.Row(first + 2), x3 = x.Row(first + 3);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        for (int c = 0; c < k; c += Chunk)
        {
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
        Sum4(a0, a1, a2, a3).Store(dotsA);
        Sum4(b0, b1, b2, b3).Store(dotsB);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void F32Avx512Tile(float* wa, float* wb, int k, in PreparedInput x, int first, float* dotsA, float* dotsB)
    {
        float* x0 = x.Row(first), x1 = x.Row(first + 1), x2 = x.Row(first + 2), x3 = x.Row(first + 3);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        for (int i = 0; i < k; i += 16)
        {
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
        Sum4(a0, a1, a2, a3).Store(dotsA);
        Sum4(b0, b1, b2, b3).Store(dotsB);
    }

    // ---- float32 weights: x [K] as is.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void F32(KernelPath path, float* w, int k, in PreparedInput x, int first, int tokens, float* dots)
    {
        int t0 = 0;
        if (path == KernelPath.Avx512)
            for (; t0 + 4 <= tokens; t0 += 4) F32Avx512x4(w, k, x, first + t0, dots + t0);
        for (int t = t0; t < tokens; t++)
        {
            float* xt = x.Row(first + t);
            dots[t] = path switch
            {
                KernelPath.Avx512 => F32Avx512(w, xt, k),
                KernelPath.Vector256 => F32Vector256(w, xt, k),
                _ => F32Scalar(w, xt, k),
            };
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float F32Scalar(float* w, float* x, int k)
    {
        float sum = 0;
        for (int i = 0; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float F32Avx512(float* w, float* x, int k)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 64 <= k; i += 64)
        {
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

    /// <summary>Four tokens at once: each weight vector is loaded once for all four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void F32Avx512x4(float* w, int k, in PreparedInput x, int first, float* dots)
    {
        float* x0 = x.Row(first), x1 = x.Row(first + 1), x2 = x.Row(first + 2), x3 = x.Row(first + 3);
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
        Sum4(a0, a1, a2, a3).Store(dots);
        for (; i < k; i++)
        {
            dots[0] += w[i] * x0[i];
            dots[1] += w[i] * x1[i];
            dots[2] += w[i] * x2[i];
            dots[3] += w[i] * x3[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float F32Vector256(float* w, float* x, int k)
    {
        Vector256<float> a0 = default, a1 = default;
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), a0);
            a1 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i + 8), Vector256.Load(x + i + 8), a1);
        }
        for (; i + 8 <= k; i += 8) a0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), Vector256.Load(x + i), a0);
        float sum = Vector256.Sum(a0 + a1);
        for (; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    // ---- bfloat16 weights. A 32-bit lane holds weights 2j (low half) and 2j+1 (high half): lane << 16 and
    // lane & 0xFFFF0000 are those two as float32, against x's even and odd values of the chunk (see PreparedInput).

    static float Bf16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Bf16(KernelPath path, ushort* w, int k, in PreparedInput x, int first, int tokens, float* dots)
    {
        if (path == KernelPath.Scalar)
        {
            for (int t = 0; t < tokens; t++)
            {
                float* xt = x.Row(first + t);
                float sum = 0;
                for (int i = 0; i < k; i++) sum += Bf16ToFloat(w[i]) * xt[i];
                dots[t] = sum;
            }
            return;
        }
        int t0 = 0;
        if (path == KernelPath.Avx512)
        {
            for (; t0 + 4 <= tokens; t0 += 4) Bf16Avx512x4(w, k, x, first + t0, dots + t0);
            for (; t0 < tokens; t0++) dots[t0] = Bf16Avx512(w, k, x.Row(first + t0));
        }
        else
        {
            for (; t0 < tokens; t0++) dots[t0] = Bf16Vector256(w, k, x.Row(first + t0));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Bf16Tail(ushort* w, float* x, int from, int k)
    {
        float sum = 0;
        for (int i = from; i < k; i++) sum += Bf16ToFloat(w[i]) * x[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Bf16Avx512(ushort* w, int k, float* x)
    {
        var high = Vector512.Create(0xFFFF0000u);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int chunks = k / Chunk, c = 0;
        for (; c + 2 <= chunks; c += 2)
        {
            var l0 = Avx512F.LoadVector512((uint*)(w + c * Chunk));
            var l1 = Avx512F.LoadVector512((uint*)(w + c * Chunk + Chunk));
            float* x0 = x + c * Chunk;
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(l0, 16).AsSingle(), Avx512F.LoadVector512(x0), a0);
            a1 = Avx512F.FusedMultiplyAdd((l0 & high).AsSingle(), Avx512F.LoadVector512(x0 + 16), a1);
            a2 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(l1, 16).AsSingle(), Avx512F.LoadVector512(x0 + 32), a2);
            a3 = Avx512F.FusedMultiplyAdd((l1 & high).AsSingle(), Avx512F.LoadVector512(x0 + 48), a3);
        }
        for (; c < chunks; c++)
        {
            var l0 = Avx512F.LoadVector512((uint*)(w + c * Chunk));
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(l0, 16).AsSingle(), Avx512F.LoadVector512(x + c * Chunk), a0);
            a1 = Avx512F.FusedMultiplyAdd((l0 & high).AsSingle(), Avx512F.LoadVector512(x + c * Chunk + 16), a1);
        }
        return Vector512.Sum((a0 + a1) + (a2 + a3)) + Bf16Tail(w, x, chunks * Chunk, k);
    }

    /// <summary>Four tokens at once: each chunk of weights is widened once and multiplied into all four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Bf16Avx512x4(ushort* w, int k, in PreparedInput x, int first, float* dots)
    {
        var high = Vector512.Create(0xFFFF0000u);
        float* x0 = x.Row(first), x1 = x.Row(first + 1), x2 = x.Row(first + 2), x3 = x.Row(first + 3);
        Vector512<float> e0 = default, o0 = default, e1 = default, o1 = default, e2 = default, o2 = default, e3 = default, o3 = default;
        int chunks = k / Chunk;
        for (int c = 0; c < chunks; c++)
        {
            var lanes = Avx512F.LoadVector512((uint*)(w + c * Chunk));
            var even = Avx512F.ShiftLeftLogical(lanes, 16).AsSingle();
            var odd = (lanes & high).AsSingle();
            int at = c * Chunk;
            e0 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x0 + at), e0);
            o0 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x0 + at + 16), o0);
            e1 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x1 + at), e1);
            o1 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x1 + at + 16), o1);
            e2 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x2 + at), e2);
            o2 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x2 + at + 16), o2);
            e3 = Avx512F.FusedMultiplyAdd(even, Avx512F.LoadVector512(x3 + at), e3);
            o3 = Avx512F.FusedMultiplyAdd(odd, Avx512F.LoadVector512(x3 + at + 16), o3);
        }
        // Every vector is reduced before the first call: the x64 ABI keeps no vector register across a call, so a
        // vector live across one would be spilled, and the JIT spills it in the loop, on every chunk.
        Sum4(e0 + o0, e1 + o1, e2 + o2, e3 + o3).Store(dots);
        int tail = chunks * Chunk;
        if (tail == k) return;
        dots[0] += Bf16Tail(w, x0, tail, k);
        dots[1] += Bf16Tail(w, x1, tail, k);
        dots[2] += Bf16Tail(w, x2, tail, k);
        dots[3] += Bf16Tail(w, x3, tail, k);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Bf16Vector256(ushort* w, int k, float* x)
    {
        var high = Vector256.Create(0xFFFF0000u);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int chunks = k / Chunk;
        for (int c = 0; c < chunks; c++)
        {
            // Lanes 0-7 hold weights 0-15 of the chunk, lanes 8-15 weights 16-31: evens at x[0..16), odds at x[16..32).
            var lo = Vector256.Load((uint*)(w + c * Chunk));
            var hi = Vector256.Load((uint*)(w + c * Chunk + 16));
            float* xc = x + c * Chunk;
            a0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(lo, 16).AsSingle(), Vector256.Load(xc), a0);
            a1 = Vector256.FusedMultiplyAdd((lo & high).AsSingle(), Vector256.Load(xc + 16), a1);
            a2 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(hi, 16).AsSingle(), Vector256.Load(xc + 8), a2);
            a3 = Vector256.FusedMultiplyAdd((hi & high).AsSingle(), Vector256.Load(xc + 24), a3);
        }
        return Vector256.Sum((a0 + a1) + (a2 + a3)) + Bf16Tail(w, x, chunks * Chunk, k);
    }

    // ---- Q8_0 weights against Q8 activations: per block, an exact integer dot product times both scales.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Q8_0(KernelPath path, byte* row, int k, in PreparedInput x, int first, int tokens, float* dots)
    {
        int blocks = k / WeightFormats.Q8Block;
        sbyte* wq = (sbyte*)row;
        ushort* scales = (ushort*)(row + k);
        float* combined = stackalloc float[blocks * RowKernels.MaxTokens];
        int t0 = 0;
        if (path == KernelPath.Avx512)
        {
            for (; t0 + 4 <= tokens; t0 += 4)
            {
                for (int j = 0; j < 4; j++) CombineScales(path, scales, x.ScaleRow(first + t0 + j), blocks, combined + j * blocks);
                Q8Avx512x4(wq, blocks, x, first + t0, combined, dots + t0);
            }
        }
        for (int t = t0; t < tokens; t++)
        {
            short* q = x.QuantizedRow(first + t);
            float* s = x.ScaleRow(first + t);
            if (path == KernelPath.Scalar)
            {
                dots[t] = Q8Scalar(wq, scales, blocks, q, s);
                continue;
            }
            CombineScales(path, scales, s, blocks, combined);
            dots[t] = path == KernelPath.Avx512 ? Q8Avx512(wq, blocks, q, combined) : Q8Vector256(wq, blocks, q, combined);
        }
    }

    // Repacked rows (see Q8): q values at row[0 .. K), float16 scales from row + K.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Q8Scalar(sbyte* wq, ushort* scales, int blocks, short* q, float* s)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++)
        {
            int dot = 0;
            for (int i = 0; i < WeightFormats.Q8Block; i++) dot += wq[b * WeightFormats.Q8Block + i] * q[b * WeightFormats.Q8Block + i];
            sum += Q8.ScaleToFloat(scales[b]) * s[b] * dot;
        }
        return sum;
    }

    /// <summary>combined[b] = weight scale b (float16, widened) * activation scale b, sixteen or eight at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void CombineScales(KernelPath path, ushort* scales, float* s, int blocks, float* combined)
    {
        int b = 0;
        if (path == KernelPath.Avx512)
        {
            var bias = Vector512.Create(Q8.HalfBias);
            var mask = Vector512.Create(0x7FFFu);
            for (; b + 16 <= blocks; b += 16)
            {
                var bits = Avx512F.ConvertToVector512UInt32(Avx.LoadVector256(scales + b)) & mask;
                (Avx512F.ShiftLeftLogical(bits, 13).AsSingle() * bias * Avx512F.LoadVector512(s + b)).Store(combined + b);
            }
        }
        for (; b < blocks; b++) combined[b] = Q8.ScaleToFloat(scales[b]) * s[b];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Q8Avx512(sbyte* wq, int blocks, short* q, float* combined)
    {
        Vector512<float> a0 = default, a1 = default;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            var w0 = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(wq + b * 32));
            var w1 = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(wq + b * 32 + 32));
            var d0 = Avx512BW.MultiplyAddAdjacent(w0, Avx512BW.LoadVector512(q + b * 32));
            var d1 = Avx512BW.MultiplyAddAdjacent(w1, Avx512BW.LoadVector512(q + b * 32 + 32));
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(d0), Vector512.Create(combined[b]), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(d1), Vector512.Create(combined[b + 1]), a1);
        }
        for (; b < blocks; b++)
        {
            var w0 = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(wq + b * 32));
            var d0 = Avx512BW.MultiplyAddAdjacent(w0, Avx512BW.LoadVector512(q + b * 32));
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(d0), Vector512.Create(combined[b]), a0);
        }
        return Vector512.Sum(a0 + a1);
    }

    /// <summary>Four tokens at once: each block of weights is widened once for all four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Q8Avx512x4(sbyte* wq, int blocks, in PreparedInput x, int first, float* combined, float* dots)
    {
        short* q0 = x.QuantizedRow(first), q1 = x.QuantizedRow(first + 1), q2 = x.QuantizedRow(first + 2), q3 = x.QuantizedRow(first + 3);
        float* c0 = combined, c1 = combined + blocks, c2 = combined + 2 * blocks, c3 = combined + 3 * blocks;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++)
        {
            var w = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(wq + b * 32));
            int at = b * 32;
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w, Avx512BW.LoadVector512(q0 + at))), Vector512.Create(c0[b]), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w, Avx512BW.LoadVector512(q1 + at))), Vector512.Create(c1[b]), a1);
            a2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w, Avx512BW.LoadVector512(q2 + at))), Vector512.Create(c2[b]), a2);
            a3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(w, Avx512BW.LoadVector512(q3 + at))), Vector512.Create(c3[b]), a3);
        }
        Sum4(a0, a1, a2, a3).Store(dots);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Q8Vector256(sbyte* wq, int blocks, short* q, float* combined)
    {
        Vector256<float> acc = default;
        for (int b = 0; b < blocks; b++)
        {
            var w = Vector256.Load(wq + b * 32);
            var (wLo, wHi) = Vector256.Widen(w);                                   // 2 x 16 int16
            short* qb = q + b * 32;
            var (p0, p1) = Vector256.Widen(wLo * Vector256.Load(qb));             // exact: |w*q| <= 127 * 127
            var (p2, p3) = Vector256.Widen(wHi * Vector256.Load(qb + 16));
            var dot = (p0 + p1) + (p2 + p3);                                       // 8 int32
            acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(dot), Vector256.Create(combined[b]), acc);
        }
        return Vector256.Sum(acc);
    }
}
