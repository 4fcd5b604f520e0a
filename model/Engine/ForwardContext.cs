namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// One sequence's part of a step: its tokens at positions [StartPosition, StartPosition + QueryLength), whose
/// keys and values go into, and whose attention reads, the KV blocks of <see cref="BlockTable"/>.
/// </summary>
public sealed record SequenceSlice(int StartPosition, int QueryLength, int[] BlockTable)
{
    public int ContextLength => StartPosition + QueryLength;
}

/// <summary>
/// The per-step metadata every stage needs, as plain data: the slices of the batch (their tokens are packed
/// back to back in slice order), the KV block size, and which packed rows need logits.
/// </summary>
public sealed record ForwardContext(IReadOnlyList<SequenceSlice> Slices, int BlockSize, int[] LogitRows)
{
    public int TokenCount => Slices.Sum(s => s.QueryLength);

    public void Validate()
    {
        if (BlockSize <= 0) throw new ArgumentException("BlockSize must be positive.");
        int tokens = 0;
        foreach (var s in Slices)
        {
            if (s.StartPosition < 0 || s.QueryLength <= 0)
                throw new ArgumentException($"A slice needs StartPosition >= 0 and QueryLength > 0, got {s.StartPosition}, {s.QueryLength}.");
            if ((long)s.BlockTable.Length * BlockSize < s.ContextLength)
            {
                throw new ArgumentException(
                    $"A slice of context length {s.ContextLength} has {s.BlockTable.Length} blocks of {BlockSize}: too few.");
            }

            tokens += s.QueryLength;
        }
        foreach (int row in LogitRows)
            if (row < 0 || row >= tokens) throw new ArgumentException($"Logit row {row} is outside the {tokens} tokens of the step.");
    }
}
