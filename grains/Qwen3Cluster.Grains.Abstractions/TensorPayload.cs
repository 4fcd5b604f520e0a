namespace Qwen3Cluster.Grains;

/// <summary>
/// A tensor on the wire: dtype name ("float32", "int64", ...), shape and raw little-endian bytes. Serialized by
/// <see cref="TensorPayloadCodec"/> as exactly that, never element by element.
/// </summary>
[Immutable, Alias("qwen3.TensorPayload")]
public sealed class TensorPayload(string dtype, long[] shape, byte[] data)
{
    public string DType { get; } = dtype;
    public long[] Shape { get; } = shape;
    public byte[] Data { get; } = data;

    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => $"{DType}[{string.Join(", ", Shape)}]";
}
