using System.Diagnostics.Metrics;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Grains;

/// <summary>
/// What the expert silos export of their own work: (token, expert) assignments each expert group ran, labelled
/// <c>stage</c>, <c>group</c> and <c>copy</c> (0, or a hot group's copy), as <c>qwen3_expert_routed_tokens_total</c>;
/// and, opted into with <c>Qwen3:Telemetry:ExpertDetail</c>, per <c>layer</c> and <c>expert</c> as
/// <c>qwen3_expert_layer_routed_tokens_total</c>. Beside them, the time an expert-group call takes: its round trip as
/// the calling stage sees it (<c>qwen3_expert_call_duration_seconds</c>, labelled <c>transport</c>: <c>socket</c>,
/// <c>in-process</c> or <c>grain</c>) and the part the group spends computing on its silo
/// (<c>qwen3_expert_group_compute_duration_seconds</c>); the difference is the call's transport and scheduling, and
/// over the data plane the silo's other groups of that layer, which share the call's frame.
/// </summary>
public static class ShardMetrics
{
    /// <summary>Bucket bounds for expert-group calls: 50 µs to 5 s, finer below 10 ms, where one layer's call falls.</summary>
    static readonly IReadOnlyList<double> CallBuckets =
        [5e-5, 1e-4, 2e-4, 3e-4, 5e-4, 7.5e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5];

    public static readonly Histogram<double> CallSeconds = EngineMetrics.Meter.CreateHistogram("qwen3.expert_call.duration", "s",
        "A stage's call to an expert group, from starting it to its output in hand (round trip, as the stage sees it; a silo's groups of one layer share one data-plane frame and run one after another), by transport",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = CallBuckets });

    public static readonly Histogram<double> ComputeSeconds = EngineMetrics.Meter.CreateHistogram("qwen3.expert_group.compute_duration", "s",
        "An expert group's computing for one call, on the silo that hosts it (its output copied off the device included)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = CallBuckets });

    public static readonly Counter<long> RoutedTokens = EngineMetrics.Meter.CreateCounter<long>("qwen3.expert.routed_tokens",
        description: "(token, expert) assignments an expert group ran, by stage, group and copy");

    public static readonly Counter<long> LayerRoutedTokens = EngineMetrics.Meter.CreateCounter<long>("qwen3.expert.layer_routed_tokens",
        description: "(token, expert) assignments by decoder layer and expert (opt-in: Qwen3:Telemetry:ExpertDetail)");

    /// <summary>
    /// Counts one call's assignments to the experts of <paramref name="range"/>; returns how many there were. Every
    /// slice of a range runs the same assignments: only its first slice adds them to the counters, so their sums stay
    /// the assignments routed (a sliced range's share shows under its first slice's group).
    /// </summary>
    public static long Record(ExpertGroupKey key, int layer, Qwen3Cluster.Model.Layers.ExpertRange range, ReadOnlySpan<long> expertIds, bool detail)
    {
        int lo = range.Lo, hi = range.Hi;
        Span<long> perExpert = stackalloc long[Math.Max(0, hi - lo)];
        long total = 0;
        foreach (long id in expertIds)
        {
            if (id < lo || id >= hi) continue;
            perExpert[(int)(id - lo)]++;
            total++;
        }
        if (range.Slice != 0) return total;
        RoutedTokens.Add(total, new("stage", key.Stage), new("group", key.Group), new("copy", key.Copy));
        if (detail)
        {
            for (int e = 0; e < perExpert.Length; e++)
                if (perExpert[e] > 0) LayerRoutedTokens.Add(perExpert[e], new("layer", layer), new("expert", lo + e));
        }
        return total;
    }
}
