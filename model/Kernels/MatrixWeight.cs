using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// A weight matrix W [Rows, Cols] as a layer holds it: one tensor at its resident width (float32, bfloat16, or uint8
/// Q8_0 blocks of shape [Rows, Cols/32*34]), which is also the layer's state-dict entry, and on the CPU the view the
/// kernels read from that tensor's memory.
/// </summary>
public sealed unsafe class MatrixWeight
{
    public MatrixWeight(Tensor tensor, long rows, long cols)
    {
        Tensor = tensor;
        Rows = checked((int)rows);
        Cols = checked((int)cols);
        Format = tensor.dtype switch
        {
            ScalarType.Float32 => WeightFormat.F32,
            ScalarType.BFloat16 => WeightFormat.BF16,
            ScalarType.Byte => WeightFormat.Q8_0,
            _ => throw new NotSupportedException($"Weights of dtype {tensor.dtype} are not computed from; load them as float32 or bfloat16."),
        };
        if (tensor.device.type == DeviceType.CPU && tensor.numel() > 0)
        {
            if (!tensor.is_contiguous()) throw new ArgumentException("A resident weight must be contiguous.");
            // The first row's bytes locate the storage: a span of the whole matrix may exceed what a span can count.
            using var first = tensor.narrow(0, 0, 1);
            fixed (byte* data = first.bytes) View = new WeightView(data, Rows, Cols, Format);
        }
    }

    public Tensor Tensor { get; }
    public int Rows { get; }
    public int Cols { get; }
    public WeightFormat Format { get; }

    /// <summary>Where the kernels read it (CPU tensors only; the tensor's storage never moves).</summary>
    public WeightView View { get; }

    /// <summary>The bytes a full pass over the matrix reads.</summary>
    public long Bytes => Rows * WeightFormats.RowBytes(Format, Cols);

    /// <summary>The float32 values (for the torch path and for checks), [Rows, Cols].</summary>
    public Tensor Dequantized()
    {
        if (Format != WeightFormat.Q8_0) return Tensor.to(ScalarType.Float32);
        var values = torch.empty([Rows, Cols], ScalarType.Float32);
        using var blocks = Tensor.cpu();
        for (int r = 0; r < Rows; r++)
        {
            using var source = blocks[r];
            using var target = values[r];
            Q8.DequantizeRow(source.bytes, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(target.bytes));
        }
        return Tensor.device.type == DeviceType.CPU ? values : values.to(Tensor.device);
    }

    /// <summary>
    /// Q8_0 blocks [rows, cols] made straight from a checkpoint's stored rows (float32, bfloat16 or float16 at
    /// <paramref name="source"/>), one row at a time: no widened copy of the matrix is ever held.
    /// </summary>
    public static Tensor QuantizeStored(IntPtr source, Checkpoint.SafetensorsDType dtype, long rows, long cols, WeightArena? arena = null)
    {
        if (cols % WeightFormats.Q8Block != 0) throw new ArgumentException($"Q8_0 needs rows of a multiple of 32 values, got {cols}.");
        long rowBytes = WeightFormats.RowBytes(WeightFormat.Q8_0, (int)cols);
        var blocks = arena?.Take(ScalarType.Byte, [rows, rowBytes]) ?? torch.empty([rows, rowBytes], ScalarType.Byte);
        if (rows == 0) return blocks;
        if (arena is null) HugePages.Advise(blocks);
        using var first = blocks.narrow(0, 0, 1);
        fixed (byte* target = first.bytes) QuantizeInto(source, dtype, rows, cols, target);
        return blocks;
    }

    /// <summary>The Q8_0 rows of a stored matrix [rows, cols] written at <paramref name="target"/> (rows × RowBytes bytes).</summary>
    public static void QuantizeInto(IntPtr source, Checkpoint.SafetensorsDType dtype, long rows, long cols, byte* target)
    {
        if (cols % WeightFormats.Q8Block != 0) throw new ArgumentException($"Q8_0 needs rows of a multiple of 32 values, got {cols}.");
        long rowBytes = WeightFormats.RowBytes(WeightFormat.Q8_0, (int)cols);
        var row = new float[cols];
        for (long r = 0; r < rows; r++)
        {
            switch (dtype)
            {
                case Checkpoint.SafetensorsDType.F32:
                    new ReadOnlySpan<float>((float*)source + r * cols, (int)cols).CopyTo(row);
                    break;
                case Checkpoint.SafetensorsDType.BF16:
                    ushort* bf = (ushort*)source + r * cols;
                    for (int i = 0; i < cols; i++) row[i] = BitConverter.Int32BitsToSingle(bf[i] << 16);
                    break;
                default:
                    ushort* h = (ushort*)source + r * cols;
                    for (int i = 0; i < cols; i++) row[i] = (float)BitConverter.UInt16BitsToHalf(h[i]);
                    break;
            }
            Q8.QuantizeRow(row, new Span<byte>(target + r * rowBytes, (int)rowBytes));
        }
    }

    /// <summary>Q8_0 blocks of a float32 or bfloat16 matrix [rows, cols] (cols a multiple of 32), as a uint8 tensor on the CPU.</summary>
    public static Tensor Quantize(Tensor matrix)
    {
        using var f32 = matrix.to(ScalarType.Float32).cpu().contiguous();
        long rows = matrix.shape[0], cols = matrix.shape[1];
        if (cols % WeightFormats.Q8Block != 0) throw new ArgumentException($"Q8_0 needs rows of a multiple of 32 values, got {cols}.");
        long rowBytes = WeightFormats.RowBytes(WeightFormat.Q8_0, (int)cols);
        var blocks = torch.empty([rows, rowBytes], ScalarType.Byte);
        HugePages.Advise(blocks);
        const long rowsAtOnce = 1024;
        for (long first = 0; first < rows; first += rowsAtOnce)
        {
            long n = Math.Min(rowsAtOnce, rows - first);
            using var source = f32.narrow(0, first, n);
            using var target = blocks.narrow(0, first, n);
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(source.bytes);
            var bytes = target.bytes;
            for (int r = 0; r < n; r++)
                Q8.QuantizeRow(values.Slice(r * (int)cols, (int)cols), bytes.Slice(r * (int)rowBytes, (int)rowBytes));
        }
        return blocks;
    }
}
