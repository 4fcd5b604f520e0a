namespace Qwen3Cluster.Model.Engine;

/// <summary>One sequence's share of a step: tokens [Start, Start + Count) and whether a token is sampled after them.</summary>
public sealed record ScheduledSlice(Sequence Sequence, int Start, int Count, bool Samples);

/// <summary>What one step runs: the slices, packed in order, as the model's input ids and metadata.</summary>
public sealed class ScheduledStep
{
    public IReadOnlyList<ScheduledSlice> Slices { get; }
    public ForwardContext Context { get; }
    public int[] InputIds { get; }
    /// <summary>The slices that sample, in the order of <see cref="ForwardContext.LogitRows"/>.</summary>
    public IReadOnlyList<ScheduledSlice> Sampling { get; }

    public ScheduledStep(IReadOnlyList<ScheduledSlice> slices, int blockSize)
    {
        Slices = slices;
        var ids = new List<int>();
        var rows = new List<int>();
        var sampling = new List<ScheduledSlice>();
        foreach (var slice in slices)
        {
            for (int i = 0; i < slice.Count; i++) ids.Add(slice.Sequence.Tokens[slice.Start + i]);
            if (slice.Samples)
            {
                rows.Add(ids.Count - 1);
                sampling.Add(slice);
            }
        }
        InputIds = [.. ids];
        Sampling = sampling;
        Context = new ForwardContext(
            slices.Select(s => new SequenceSlice(s.Start, s.Count, [.. s.Sequence.BlockTable])).ToArray(),
            blockSize,
            [.. rows]);
    }
}
