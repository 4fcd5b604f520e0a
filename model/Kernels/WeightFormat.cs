namespace Qwen3Cluster.Model.Kernels;

/// <summary>How a weight matrix's rows are stored in memory.</summary>
public enum WeightFormat
{
    /// <summary>float32, 4 bytes a weight.</summary>
    F32,
    /// <summary>bfloat16 as the checkpoint stores it, 2 bytes a weight; widened to float32 in registers.</summary>
    BF16,
    /// <summary>
    /// llama.cpp's Q8_0: blocks of 32 weights, a float16 scale and 32 int8 values each (34 bytes, 8.5 bits a weight),
    /// w = scale * q; each row repacked as its int8 values then its scales (see <see cref="Q8"/>).
    /// </summary>
    Q8_0,
    /// <summary>
    /// Q8_0's blocks, eight rows interleaved (ik_llama.cpp's run-time repacking, Q8_0_R8): for each group of eight rows
    /// and block of 32, the eight rows' 4-byte runs of each four values side by side, then their eight scales, so one
    /// <c>vpdpbusd</c> adds four products to each of eight rows and the scales apply to eight rows at once. The same
    /// 34 bytes a block; rows a multiple of eight (see <see cref="Q8"/>).
    /// </summary>
    Q8_0x8,
}

public static class WeightFormats
{
    public const int Q8Block = 32;
    public const int Q8BlockBytes = 2 + Q8Block;

    /// <summary>The bytes one row takes (for <see cref="WeightFormat.Q8_0x8"/>, an eighth of a group's).</summary>
    public static long RowBytes(WeightFormat format, int cols) => format switch
    {
        WeightFormat.F32 => 4L * cols,
        WeightFormat.BF16 => 2L * cols,
        WeightFormat.Q8_0 or WeightFormat.Q8_0x8 => (long)(cols / Q8Block) * Q8BlockBytes,
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    public static bool IsQ8(this WeightFormat format) => format is WeightFormat.Q8_0 or WeightFormat.Q8_0x8;
}
