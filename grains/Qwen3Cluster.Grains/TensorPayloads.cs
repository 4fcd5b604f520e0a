using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Grains;

/// <summary>Tensors to and from <see cref="TensorPayload"/>: one copy of the raw bytes each way.</summary>
public static class TensorPayloads
{
    public static TensorPayload ToPayload(this Tensor tensor) =>
        new(Name(tensor.dtype), tensor.shape, Qwen3Cluster.Model.Checkpoint.TensorFactory.ToBytes(tensor));

    /// <summary>
    /// As <see cref="ToPayload(Tensor)"/>, into an array of <paramref name="buffers"/> that has exactly the bytes' length
    /// (else into a new one, kept there; at most <see cref="MaxBuffers"/> lengths are kept). For a caller that sends one
    /// payload at a time and knows the last is read once it sends the next: a stage's output, which its replica has
    /// copied (in-process: this same array) or received (another silo: serialized) before it asks for the next step.
    /// A step's logits are 600 KB a sampled row: a new array each step made most of a serving silo's allocations (about
    /// 100 MB/s at 16 streams), large objects that only a full collection frees.
    /// </summary>
    public static TensorPayload ToPayload(this Tensor tensor, Dictionary<long, byte[]> buffers)
    {
        using var cpu = Qwen3Cluster.Model.Checkpoint.TensorFactory.ContiguousOnCpu(tensor);
        var bytes = cpu.bytes;
        if (!buffers.TryGetValue(bytes.Length, out var data))
        {
            if (buffers.Count >= MaxBuffers) buffers.Clear();
            buffers[bytes.Length] = data = new byte[bytes.Length];
        }
        bytes.CopyTo(data);
        return new TensorPayload(Name(tensor.dtype), tensor.shape, data);
    }

    /// <summary>Lengths <see cref="ToPayload(Tensor, Dictionary{long, byte[]})"/> keeps arrays of (a step's sampled rows vary).</summary>
    public const int MaxBuffers = 4;

    public static TensorPayload FromIds(int[] ids) =>
        new("int64", [ids.Length], System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.Select(i => (long)i).ToArray().AsSpan()).ToArray());

    public static Tensor ToTensor(this TensorPayload payload, Device device)
    {
        var dtype = Type(payload.DType);
        long expected = payload.ElementCount * ElementSize(dtype);
        if (payload.Data.Length != expected)
            throw new ArgumentException($"Tensor payload {payload} carries {payload.Data.Length} bytes, expected {expected}.");
        var cpu = empty(payload.Shape, dtype);
        if (payload.Data.Length > 0) payload.Data.AsSpan().CopyTo(cpu.bytes);
        if (device.type == DeviceType.CPU) return cpu;
        using (cpu) return cpu.to(device);
    }

    static string Name(ScalarType type) => type switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Int64 => "int64",
        ScalarType.Int32 => "int32",
        ScalarType.Bool => "bool",
        _ => throw new NotSupportedException($"dtype {type} does not cross silos."),
    };

    static ScalarType Type(string name) => name switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        "int64" => ScalarType.Int64,
        "int32" => ScalarType.Int32,
        "bool" => ScalarType.Bool,
        _ => throw new NotSupportedException($"Tensor payload dtype '{name}' is not known."),
    };

    static long ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        ScalarType.Int64 => 8,
        _ => 1,
    };
}
