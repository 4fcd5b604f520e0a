using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Q8_0 as llama.cpp computes it: blocks of 32 values, d = max|x| / 127, q = round(x / d) in [-127, 127]. A weight
/// row keeps its blocks repacked (the same 34 bytes a block): all its q values first, stored as the bytes q + 128
/// (what the unsigned side of <c>vpdpbusd</c> reads), then its float16 scales. Activations, quantised once per
/// product, keep d as float32 and q as int8; for the VNNI path each block also gets eight int32 offsets, -128 times
/// the sum of each four q values, the start from which <c>vpdpbusd</c> of the weight bytes ends at the exact Σ w·x.
/// </summary>
public static unsafe class Q8
{
    const int Block = WeightFormats.Q8Block;

    /// <summary>
    /// 2^112: a float16's exponent and mantissa, moved into a float32's (bits &lt;&lt; 13), are off by this factor, for
    /// normal and subnormal values alike. Arithmetic rather than ggml's 256 KiB table, which weights streaming through
    /// the caches would keep evicting. Scales are never negative, infinite or NaN.
    /// </summary>
    public const float HalfBias = 5.192297e33f;

    public static float ScaleToFloat(ushort bits) => BitConverter.Int32BitsToSingle((bits & 0x7FFF) << 13) * HalfBias;

    /// <summary>One row of <paramref name="row"/>.Length floats (a multiple of 32) into its q values then its float16 scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRow(ReadOnlySpan<float> row, Span<byte> packed)
    {
        int n = row.Length / Block;
        var scales = MemoryMarshal.Cast<byte, ushort>(packed.Slice(row.Length, 2 * n));
        for (int b = 0; b < n; b++)
        {
            var values = row.Slice(b * Block, Block);
            float amax = 0;
            foreach (float v in values) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            scales[b] = BitConverter.HalfToUInt16Bits((Half)d);
            for (int i = 0; i < Block; i++) packed[b * Block + i] = (byte)(MathF.Round(values[i] * id, MidpointRounding.AwayFromZero) + 128);
        }
    }

    /// <summary>Activations x [K] (K a multiple of 32) -> q [K] as int8 and one float32 scale per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivation(float* x, int k, sbyte* q, float* scales)
    {
        for (int b = 0; b < k / Block; b++)
        {
            float* v = x + b * Block;
            float amax = 0;
            for (int i = 0; i < Block; i++) amax = MathF.Max(amax, MathF.Abs(v[i]));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            scales[b] = d;
            for (int i = 0; i < Block; i++) q[b * Block + i] = (sbyte)MathF.Round(v[i] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>
    /// offsets[j] = -128 (q[4j] + q[4j+1] + q[4j+2] + q[4j+3]) for the K/4 groups of q [K], and blockSums[b] = -128 times
    /// the sum of block b's 32 values.
    /// </summary>
    public static void Offsets(sbyte* q, int k, int* offsets, int* blockSums)
    {
        for (int b = 0; b < k / Block; b++)
        {
            int sum = 0;
            for (int j = b * 8; j < b * 8 + 8; j++)
            {
                offsets[j] = -128 * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
                sum += offsets[j];
            }
            blockSums[b] = sum;
        }
    }

    /// <summary>
    /// Eight packed rows (row-major, <paramref name="rowBytes"/> apart, as <see cref="QuantizeRow"/> writes them) into one
    /// group of <see cref="WeightFormat.Q8_0x8"/>: per block, 8 runs of 32 bytes (run q: each row's values 4q .. 4q+3,
    /// row after row), then the 8 rows' scales.
    /// </summary>
    public static void Interleave8(byte* rows, long rowBytes, int k, byte* group)
    {
        int blocks = k / Block;
        for (int b = 0; b < blocks; b++)
        {
            byte* target = group + b * 8 * WeightFormats.Q8BlockBytes;
            for (int q = 0; q < 8; q++)
            {
                for (int r = 0; r < 8; r++) *(uint*)(target + q * 32 + r * 4) = *(uint*)(rows + r * rowBytes + b * Block + q * 4);
            }
            for (int r = 0; r < 8; r++) ((ushort*)(target + 256))[r] = ((ushort*)(rows + r * rowBytes + k))[b];
        }
    }

    /// <summary>The inverse of <see cref="Interleave8"/>.</summary>
    public static void Deinterleave8(byte* group, int k, byte* rows, long rowBytes)
    {
        int blocks = k / Block;
        for (int b = 0; b < blocks; b++)
        {
            byte* source = group + b * 8 * WeightFormats.Q8BlockBytes;
            for (int q = 0; q < 8; q++)
            {
                for (int r = 0; r < 8; r++) *(uint*)(rows + r * rowBytes + b * Block + q * 4) = *(uint*)(source + q * 32 + r * 4);
            }
            for (int r = 0; r < 8; r++) ((ushort*)(rows + r * rowBytes + k))[b] = ((ushort*)(source + 256))[r];
        }
    }

    /// <summary>
    /// <see cref="QuantizeActivation"/> with AVX-512, bit for bit the same: the same maximum, the same scalar scale
    /// and reciprocal, the same products, and rounding half away from zero done exactly (truncate, then step away
    /// from zero where the dropped fraction is at least one half).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivationAvx512(float* x, int k, sbyte* q, float* scales)
    {
        var half = Vector512.Create(0.5f);
        for (int b = 0; b < k / Block; b++)
        {
            float* v = x + b * Block;
            var lo = Avx512F.LoadVector512(v);
            var hi = Avx512F.LoadVector512(v + 16);
            float amax = LaneMax(Vector512.Max(Vector512.Abs(lo), Vector512.Abs(hi)));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            scales[b] = d;
            var scale = Vector512.Create(id);
            var qlo = RoundHalfAway(lo * scale, half);
            var qhi = RoundHalfAway(hi * scale, half);
            Avx512F.ConvertToVector128SByte(Avx512F.ConvertToVector512Int32WithTruncation(qlo)).Store(q + b * Block);
            Avx512F.ConvertToVector128SByte(Avx512F.ConvertToVector512Int32WithTruncation(qhi)).Store(q + b * Block + 16);
        }
    }

    /// <summary><see cref="QuantizeActivationAvx512"/> on 256-bit vectors (AVX2), bit for bit the same as the scalar one too.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivationVector256(float* x, int k, sbyte* q, float* scales)
    {
        var half = Vector256.Create(0.5f);
        // vpackssdw and vpacksswb work within 128-bit lanes: this puts the 32 bytes back in order.
        var order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        for (int b = 0; b < k / Block; b++)
        {
            float* v = x + b * Block;
            var v0 = Avx.LoadVector256(v);
            var v1 = Avx.LoadVector256(v + 8);
            var v2 = Avx.LoadVector256(v + 16);
            var v3 = Avx.LoadVector256(v + 24);
            float amax = LaneMax(Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3))));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            scales[b] = d;
            var scale = Vector256.Create(id);
            var i0 = Avx.ConvertToVector256Int32WithTruncation(RoundHalfAway(v0 * scale, half));
            var i1 = Avx.ConvertToVector256Int32WithTruncation(RoundHalfAway(v1 * scale, half));
            var i2 = Avx.ConvertToVector256Int32WithTruncation(RoundHalfAway(v2 * scale, half));
            var i3 = Avx.ConvertToVector256Int32WithTruncation(RoundHalfAway(v3 * scale, half));
            var bytes = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
            Avx2.PermuteVar8x32(bytes.AsInt32(), order).AsSByte().Store(q + b * Block);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> RoundHalfAway(Vector256<float> y, Vector256<float> half)
    {
        var t = Avx.RoundToZero(y);
        var away = Vector256.GreaterThanOrEqual(Vector256.Abs(y - t), half);
        return t + (away & Vector256.CopySign(Vector256<float>.One, y));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float LaneMax(Vector512<float> v) => LaneMax(Vector256.Max(v.GetLower(), v.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float LaneMax(Vector256<float> v)
    {
        var m4 = Vector128.Max(v.GetLower(), v.GetUpper());
        m4 = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(2, 3, 0, 1)));
        m4 = Vector128.Max(m4, Vector128.Shuffle(m4, Vector128.Create(1, 0, 3, 2)));
        return m4.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> RoundHalfAway(Vector512<float> y, Vector512<float> half)
    {
        var t = Avx512F.RoundScale(y, 0b1011); // truncate toward zero, no precision exception
        var away = Vector512.GreaterThanOrEqual(Vector512.Abs(y - t), half);
        return t + (away & Vector512.CopySign(Vector512<float>.One, y));
    }

    /// <summary>The float32 values of a row of blocks (the reference the quantised products are measured against).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DequantizeRow(ReadOnlySpan<byte> packed, Span<float> row)
    {
        var scales = MemoryMarshal.Cast<byte, ushort>(packed.Slice(row.Length));
        for (int b = 0; b < row.Length / Block; b++)
        {
            float d = ScaleToFloat(scales[b]);
            for (int i = 0; i < Block; i++) row[b * Block + i] = d * (packed[b * Block + i] - 128);
        }
    }
}
