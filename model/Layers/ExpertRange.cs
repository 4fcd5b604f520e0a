namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Experts [Lo, Hi) of a layer, whole or one slice of them: what one expert group holds. Slice s of n holds the
/// rows [s I/n, (s+1) I/n) of each expert's gate and up projections and the same columns of its down projection
/// (I the experts' intermediate size), as a tensor-parallel rank holds them in vLLM's MoE layers: every slice of a
/// range computes for every token routed to one of its experts, and their outputs add up to the whole experts'.
/// </summary>
public readonly record struct ExpertRange(int Lo, int Hi, int Slice = 0, int Slices = 1)
{
    public bool Contains(long expert) => expert >= Lo && expert < Hi;

    /// <summary>The intermediate rows this slice holds, [From, From + Count), of <paramref name="intermediate"/>.</summary>
    public (long From, long Count) Part(long intermediate)
    {
        if (Slices < 1) throw new ArgumentOutOfRangeException(nameof(Slices), $"Expert range {this}: {Slices} slices.");
        if (intermediate % Slices != 0)
            throw new ArgumentException($"The experts' intermediate size {intermediate} does not cut into {Slices} equal slices.");
        long count = intermediate / Slices;
        return (Slice * count, count);
    }

    /// <summary>
    /// E experts split into <paramref name="groups"/> contiguous ranges as evenly as possible, each cut into
    /// <paramref name="slices"/> slices: range r's slice s is group r * slices + s.
    /// </summary>
    public static ExpertRange[] Split(int experts, int groups, int slices = 1)
    {
        if (groups <= 0 || groups > experts)
            throw new ArgumentOutOfRangeException(nameof(groups), $"Cannot split {experts} experts into {groups} groups.");
        if (slices <= 0)
            throw new ArgumentOutOfRangeException(nameof(slices), $"Cannot cut experts into {slices} slices.");
        var ranges = new ExpertRange[groups * slices];
        for (int g = 0; g < groups; g++)
        {
            for (int s = 0; s < slices; s++)
                ranges[g * slices + s] = new ExpertRange(experts * g / groups, experts * (g + 1) / groups, s, slices);
        }
        return ranges;
    }

    public override string ToString() => Slices == 1 ? $"[{Lo}, {Hi})" : $"[{Lo}, {Hi}) slice {Slice + 1}/{Slices}";
}
