namespace Qwen3Cluster.Model.Kernels;

/// <summary>A weight matrix W [Rows, Cols] in memory, row after row in <see cref="Format"/>.</summary>
public readonly unsafe struct WeightView(byte* data, int rows, int cols, WeightFormat format)
{
    public byte* Data { get; } = data;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public WeightFormat Format { get; } = format;
    public long RowBytes { get; } = WeightFormats.RowBytes(format, cols);

    public byte* Row(int row) => Data + row * RowBytes;

    /// <summary>Rows 8g .. 8g+7 of a <see cref="WeightFormat.Q8_0x8"/> matrix.</summary>
    public byte* Group(int group) => Data + group * 8 * RowBytes;
}

/// <summary>
/// Activations x [M, K] made ready, once per product, for the weight format and path that read them: float32 rows
/// (for bfloat16 weights on a vector path, each 32 values stored as their 16 even then 16 odd ones, the order
/// bfloat16 pairs widen in), or for Q8_0 int8 values with a float32 scale per block of 32 and, for the VNNI path,
/// the int32 starts of the byte dot products that make them exact: per lane for row-major blocks, per block for
/// interleaved rows (see <see cref="Q8"/>).
/// </summary>
public readonly unsafe struct PreparedInput(float* values, sbyte* quantized, float* scales, int* offsets, int* blockSums, int m, int k)
{
    public PreparedInput(float* values, int m, int k) : this(values, null, null, null, null, m, k)
    {
    }

    public float* Values { get; } = values;
    public sbyte* Quantized { get; } = quantized;
    public float* Scales { get; } = scales;
    public int* Offsets { get; } = offsets;
    public int* BlockSums { get; } = blockSums;
    public int M { get; } = m;
    public int K { get; } = k;

    public float* Row(int m) => Values + (long)m * K;
    public sbyte* QuantizedRow(int m) => Quantized + (long)m * K;
    public float* ScaleRow(int m) => Scales + (long)m * (K / WeightFormats.Q8Block);
    /// <summary>Eight int32 per block of 32, one for each four bytes <c>vpdpbusd</c> sums into a lane.</summary>
    public int* OffsetRow(int m) => Offsets + (long)m * (K / 4);
    /// <summary>One int32 per block of 32: -128 times the block's sum, where <c>vpdpbusd</c> over interleaved rows starts.</summary>
    public int* BlockSumRow(int m) => BlockSums + (long)m * (K / WeightFormats.Q8Block);
}
