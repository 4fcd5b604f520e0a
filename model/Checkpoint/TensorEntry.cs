namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>One tensor in a safetensors header: where its bytes lie relative to the data section.</summary>
public sealed record TensorEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
}
