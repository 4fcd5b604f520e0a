using System.Diagnostics.Metrics;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Grains;

/// <summary>
/// What the expert silos export of their own work: (token, expert) assignments each expert group ran, labelled
/// <c>stage</c>, <c>group</c> and <c>copy</c> (0, or a hot group's copy), as <c>qwen3_expert_routed_tokens_total</c>;
/// and, opted into with <c>Qwen3:Telemetry:ExpertDetail</c>, per <c>layer</c> and <c>expert</c> as
/// <c>qwen3_expert_layer_routed_tokens_total</c>.
/// </summary>
public static class ShardMetrics
{
    public static readonly Counter<long> RoutedTokens = EngineMetrics.Meter.CreateCounter<long>("qwen3.expert.routed_tokens",
        description: "(token, expert) assignments an expert group ran, by stage, group and copy");

    public static readonly Counter<long> LayerRoutedTokens = EngineMetrics.Meter.CreateCounter<long>("qwen3.expert.layer_routed_tokens",
        description: "(token, expert) assignments by decoder layer and expert (opt-in: Qwen3:Telemetry:ExpertDetail)");

    /// <summary>Counts one call's assignments to experts [lo, hi); returns how many there were.</summary>
    public static long Record(ExpertGroupKey key, int layer, int lo, int hi, ReadOnlySpan<long> expertIds, bool detail)
    {
        Span<long> perExpert = stackalloc long[Math.Max(0, hi - lo)];
        long total = 0;
        foreach (long id in expertIds)
        {
            if (id < lo || id >= hi) continue;
            perExpert[(int)(id - lo)]++;
            total++;
        }
        RoutedTokens.Add(total, new("stage", key.Stage), new("group", key.Group), new("copy", key.Copy));
        if (detail)
        {
            for (int e = 0; e < perExpert.Length; e++)
                if (perExpert[e] > 0) LayerRoutedTokens.Add(perExpert[e], new("layer", layer), new("expert", lo + e));
        }
        return total;
    }
}
