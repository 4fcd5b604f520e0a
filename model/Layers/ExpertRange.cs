namespace Qwen3Cluster.Model.Layers;

/// <summary>Experts [Lo, Hi) of a layer: what one expert group holds.</summary>
public readonly record struct ExpertRange(int Lo, int Hi)
{
    public bool Contains(long expert) => expert >= Lo && expert < Hi;

    /// <summary>E experts split into <paramref name="groups"/> contiguous ranges as evenly as possible.</summary>
    public static ExpertRange[] Split(int experts, int groups)
    {
        if (groups <= 0 || groups > experts)
            throw new ArgumentOutOfRangeException(nameof(groups), $"Cannot split {experts} experts into {groups} groups.");
        var ranges = new ExpertRange[groups];
        for (int g = 0; g < groups; g++)
            ranges[g] = new ExpertRange(experts * g / groups, experts * (g + 1) / groups);
        return ranges;
    }

    public override string ToString() => $"[{Lo}, {Hi})";
}
