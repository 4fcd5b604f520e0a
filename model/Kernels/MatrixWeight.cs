using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// A weight matrix W [Rows, Cols] as a layer holds it: one tensor at its resident width (float32, bfloat16, or uint8
/// Q8_0 blocks: [Rows, Cols/32*34] row by row, or [Rows/8, 8*Cols/32*34] eight rows interleaved), which is also the
/// layer's state-dict entry, and on the CPU the view the kernels read from that tensor's memory.
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
            ScalarType.Byte => tensor.shape[0] == rows ? WeightFormat.Q8_0 : WeightFormat.Q8_0x8,
            _ => throw new NotSupportedException($"Weights of dtype {tensor.dtype} are not computed from; load them as float32 or bfloat16."),
        };
        if (tensor.device.type == DeviceType.CPU && tensor.numel() > 0)
        {
            if (!tensor.is_contiguous()) throw new ArgumentException("A resident weight must be contiguous.");
            View = new WeightView(TensorMemory.Address(tensor), Rows, Cols, Format);
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
        if (!Format.IsQ8()) return Tensor.to(ScalarType.Float32);
        var values = torch.empty([Rows, Cols], ScalarType.Float32);
        using var stored = Tensor.cpu().contiguous();
        using var blocks = Format == WeightFormat.Q8_0 ? stored.alias() : RowMajor(stored, Rows, Cols);
        for (int r = 0; r < Rows; r++)
        {
            using var source = blocks[r];
            using var target = values[r];
            Q8.DequantizeRow(source.bytes, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(target.bytes));
        }
        return Tensor.device.type == DeviceType.CPU ? values : values.to(Tensor.device);
    }

    /// <summary>Whether Q8_0 rows of a matrix are interleaved in eights: where the VNNI or the AVX2 kernel reads them that way.</summary>
    public static bool Interleaves(long rows) => rows > 0 && rows % 8 == 0 && KernelPaths.Best is KernelPath.Avx512Vnni or KernelPath.Vector256;

    /// <summary>The shape of a quantised matrix [rows, cols] as stored: row by row, or in groups of eight rows.</summary>
    public static long[] QuantizedShape(long rows, long cols, bool interleave)
    {
        long rowBytes = WeightFormats.RowBytes(WeightFormat.Q8_0, (int)cols);
        return interleave ? [rows / 8, 8 * rowBytes] : [rows, rowBytes];
    }

    static Tensor RowMajor(Tensor groups, int rows, int cols)
    {
        long rowBytes = WeightFormats.RowBytes(WeightFormat.Q8_0, cols);
        var result = torch.empty([rows, rowBytes], ScalarType.Byte);
        if (rows == 0) return result;
        byte* target = TensorMemory.Address(result), source = TensorMemory.Address(groups);
        for (int g = 0; g < rows / 8; g++) Q8.Deinterleave8(source + g * 8 * rowBytes, cols, target + g * 8 * rowBytes, rowBytes);
        return result;
    }

    /// <summary>
    /// Q8_0 blocks [rows, cols] made straight from a checkpoint's stored rows (float32, bfloat16 or float16 at
    /// <paramref name="source"/>), one row at a time: no widened copy of the matrix is ever held.
    /// </summary>
    public static Tensor QuantizeStored(IntPtr source, Checkpoint.SafetensorsDType dtype, long rows, long cols, WeightArena? arena = null)
    {
        if (cols % WeightFormats.Q8Block != 0) throw new ArgumentException($"Q8_0 needs rows of a multiple of 32 values, got {cols}.");
        bool interleave = Interleaves(rows);
        var shape = QuantizedShape(rows, cols, interleave);
        var blocks = arena?.Take(ScalarType.Byte, shape) ?? torch.empty(shape, ScalarType.Byte);
        if (rows == 0) return blocks;
        if (arena is null) HugePages.Advise(blocks);
        QuantizeInto(source, dtype, rows, cols, TensorMemory.Address(blocks), interleave);
        return blocks;
    }

    /// <summary>
    /// The Q8_0 rows of a stored matrix [rows, cols] written at <paramref name="target"/> (rows × RowBytes bytes), row by
    /// row or eight rows interleaved.
    /// </summary>
    public static void QuantizeInto(IntPtr source, Checkpoint.SafetensorsDType dtype, long rows, long cols, byte* target, bool interleave)
    {
        if (cols % WeightFormats.Q8Block != 0) throw new ArgumentException($"Q8_0 needs rows of a multiple of 32 values, got {cols}.");
        if (interleave && rows % 8 != 0) throw new ArgumentException($"Interleaved Q8_0 needs a multiple of 8 rows, got {rows}.");
        long rowBytes = WeightFormats.RowBytes(WeightFormat.Q8_0, (int)cols);
        var row = new float[cols];
        // Interleaved, each eight rows are packed here first, then woven into their group.
        byte* eight = interleave ? (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)(8 * rowBytes)) : null;
        try
        {
            for (long r = 0; r < rows; r++)
            {
                byte* packed = interleave ? eight + r % 8 * rowBytes : target + r * rowBytes;
                FillRow(source, dtype, r, cols, row);
                Q8.QuantizeRow(row, new Span<byte>(packed, (int)rowBytes));
                if (interleave && r % 8 == 7) Q8.Interleave8(eight, rowBytes, (int)cols, target + (r - 7) * rowBytes);
            }
        }
        finally
        {
            if (eight != null) System.Runtime.InteropServices.NativeMemory.Free(eight);
        }
    }

    /// <summary>Row <paramref name="r"/> of a stored matrix as float32.</summary>
    static void FillRow(IntPtr source, Checkpoint.SafetensorsDType dtype, long r, long cols, float[] row)
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
    }

    /// <summary>
    /// Q8_0 blocks of a float32 or bfloat16 matrix [rows, cols] (cols a multiple of 32), as a uint8 tensor on the CPU:
    /// eight rows interleaved where <paramref name="interleave"/> says (by default, where <see cref="Interleaves"/> does).
    /// </summary>
    public static Tensor Quantize(Tensor matrix, bool? interleave = null)
    {
        using var f32 = matrix.to(ScalarType.Float32).cpu().contiguous();
        long rows = matrix.shape[0], cols = matrix.shape[1];
        bool eights = interleave ?? Interleaves(rows);
        var blocks = torch.empty(QuantizedShape(rows, cols, eights), ScalarType.Byte);
        if (rows == 0) return blocks;
        HugePages.Advise(blocks);
        QuantizeInto((IntPtr)TensorMemory.Address(f32), Checkpoint.SafetensorsDType.F32, rows, cols, TensorMemory.Address(blocks), eights);
        return blocks;
    }
}
