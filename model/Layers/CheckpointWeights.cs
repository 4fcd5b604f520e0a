using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Kernels;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>How the matrices a model multiplies by stay in memory.</summary>
public enum WeightStorage
{
    /// <summary>At the checkpoint's width: bfloat16 stays 2 bytes a weight, float32 stays float32 (float16 is widened).</summary>
    Stored,
    /// <summary>Q8_0 blocks (llama.cpp's layout) made at load from float32 or bfloat16; embeddings, norms and routers keep their width.</summary>
    Int8,
    /// <summary>Everything widened to float32 (the engine before weights kept their width).</summary>
    Float32,
}

public static class WeightStorages
{
    /// <summary>A quantisation option as users write it: "none" (or empty) or "int8"; anything else names the option at fault.</summary>
    public static WeightStorage Parse(string? text, string option) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "none" => WeightStorage.Stored,
        "int8" or "q8_0" => WeightStorage.Int8,
        _ => throw new ArgumentException($"{option}: '{text}' is not one of none, int8."),
    };
}

/// <summary>
/// Weights read from a checkpoint onto a device; vectors (norms, biases, routers) as float32, matrices as
/// <paramref name="storage"/> says, on the CPU in this load's <see cref="WeightArena"/>.
/// </summary>
public sealed class CheckpointWeights(CheckpointReader reader, Device device, IProgress<string>? progress = null,
    WeightStorage storage = WeightStorage.Stored) : IWeightSource, IDisposable
{
    readonly WeightArena? _arena = device.type == TorchSharp.DeviceType.CPU ? new WeightArena() : null;

    public Device Device => device;
    public WeightStorage Storage => storage;

    public Tensor Load(string name, params long[] shape)
    {
        progress?.Report(name);
        return reader.Load(name, shape, ScalarType.Float32, device);
    }

    public Tensor LoadTable(string name, long rows, long cols)
    {
        progress?.Report(name);
        return reader.Load(name, [rows, cols], ResidentType(name), device, _arena);
    }

    public Tensor LoadMatrix(string name, long rows, long cols)
    {
        if (storage != WeightStorage.Int8 || cols % WeightFormats.Q8Block != 0) return LoadTable(name, rows, cols);
        if (device.type != TorchSharp.DeviceType.CPU)
            throw new NotSupportedException($"Int8 weights are computed on the CPU only; device {device} keeps the checkpoint's width.");
        progress?.Report(name);
        var (file, entry) = reader.Locate(name, [rows, cols]);
        return file.WithBytes(entry, (pointer, _) => MatrixWeight.QuantizeStored(pointer, entry.DType, rows, cols, _arena));
    }

    /// <summary>
    /// On the CPU each matrix goes straight from the file into its slot (copied at its width, or quantised), with no
    /// matrix-sized copy on the way (a part of columns is gathered first, a part of rows is read in place); elsewhere
    /// as <see cref="IWeightSource.LoadStacked"/> does it.
    /// </summary>
    public unsafe Tensor LoadStacked(IReadOnlyList<string> names, long rows, long cols, MatrixPart? part = null)
    {
        if (_arena is null || names.Count == 0) return IWeightSource.Stack(this, names, rows, cols, part);
        var (partRows, partCols) = part?.Shape(rows, cols) ?? (rows, cols);
        bool quantise = storage == WeightStorage.Int8 && partCols % WeightFormats.Q8Block == 0;
        bool interleave = quantise && MatrixWeight.Interleaves(partRows);
        var dtype = quantise ? ScalarType.Byte : ResidentType(names[0]);
        long[] slot = quantise ? MatrixWeight.QuantizedShape(partRows, partCols, interleave) : [partRows, partCols];
        var stacked = _arena.Take(dtype, [names.Count, .. slot]);
        for (int e = 0; e < names.Count; e++)
        {
            progress?.Report(names[e]);
            var (file, entry) = reader.Locate(names[e], [rows, cols]);
            using var matrix = stacked[e];
            byte* target = TensorMemory.Address(matrix);
            if (quantise)
            {
                file.WithBytes(entry, (pointer, _) => WithPart(pointer, entry.DType.ByteSize(), rows, cols, part, source =>
                    MatrixWeight.QuantizeInto(source, entry.DType, partRows, partCols, target, interleave)));
            }
            else if (TensorFactory.ScalarTypeOf(entry.DType) == dtype)
            {
                long length = partRows * partCols * entry.DType.ByteSize();
                file.WithBytes(entry, (pointer, _) => WithPart(pointer, entry.DType.ByteSize(), rows, cols, part, source =>
                    Buffer.MemoryCopy((void*)source, target, length, length)));
            }
            else
            {
                using var converted = reader.Load(names[e], [rows, cols], dtype, device);
                using var piece = part is { } p ? converted.narrow(p.Columns ? 1 : 0, p.From, p.Count) : converted.alias();
                matrix.copy_(piece);
            }
        }
        return stacked;
    }

    /// <summary>
    /// Runs <paramref name="use"/> on the part of the matrix [rows, cols] at <paramref name="matrix"/> (elements of
    /// <paramref name="size"/> bytes), laid out as a matrix of its own: rows where they are, columns gathered.
    /// </summary>
    static unsafe int WithPart(IntPtr matrix, int size, long rows, long cols, MatrixPart? part, Action<IntPtr> use)
    {
        if (part is not { } p)
        {
            use(matrix);
            return 0;
        }
        if (!p.Columns)
        {
            use(matrix + (nint)(p.From * cols * size));
            return 0;
        }
        long width = p.Count * size;
        byte* gathered = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)(rows * width));
        try
        {
            for (long r = 0; r < rows; r++)
                Buffer.MemoryCopy((byte*)matrix + (r * cols + p.From) * size, gathered + r * width, width, width);
            use((IntPtr)gathered);
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.Free(gathered);
        }
        return 0;
    }

    /// <summary>bfloat16 stays bfloat16 unless everything is float32; float32 and float16 are float32.</summary>
    ScalarType ResidentType(string name) =>
        storage != WeightStorage.Float32 && reader.Locate(name).Entry.DType == SafetensorsDType.BF16 ? ScalarType.BFloat16 : ScalarType.Float32;

    public bool Contains(string name) => reader.Contains(name);

    /// <summary>Lets go of the arena's handles; the weights keep their memory.</summary>
    public void Dispose() => _arena?.Dispose();
}
