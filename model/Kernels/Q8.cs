using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Q8_0 as llama.cpp computes it: blocks of 32 values, d = max|x| / 127, q = round(x / d) in [-127, 127]. A weight
/// row keeps its blocks repacked (the same 34 bytes a block): all its q values first, 64-byte aligned runs the vector
/// loads never split, then its float16 scales. Activations, quantised once per product, keep d as float32 and q
/// widened to int16 for the multiply-add instructions.
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
            for (int i = 0; i < Block; i++) packed[b * Block + i] = (byte)(sbyte)MathF.Round(values[i] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>Activations x [K] (K a multiple of 32) -> q [K] as int16 and one float32 scale per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivation(float* x, int k, short* q, float* scales)
    {
        for (int b = 0; b < k / Block; b++)
        {
            float* v = x + b * Block;
            float amax = 0;
            for (int i = 0; i < Block; i++) amax = MathF.Max(amax, MathF.Abs(v[i]));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            scales[b] = d;
            for (int i = 0; i < Block; i++) q[b * Block + i] = (short)MathF.Round(v[i] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>The float32 values of a row of blocks (the reference the quantised products are measured against).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DequantizeRow(ReadOnlySpan<byte> packed, Span<float> row)
    {
        var scales = MemoryMarshal.Cast<byte, ushort>(packed.Slice(row.Length));
        for (int b = 0; b < row.Length / Block; b++)
        {
            float d = ScaleToFloat(scales[b]);
            for (int i = 0; i < Block; i++) row[b * Block + i] = d * (sbyte)packed[b * Block + i];
        }
    }
}
