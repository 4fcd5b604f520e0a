using System.Diagnostics.Metrics;
using Qwen3Cluster.Grains;

namespace Qwen3Cluster.ClusterTests;

/// <summary>The expert silos' routed-token counters, read back with a MeterListener.</summary>
public sealed class ShardMetricsTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AGroupCountsItsOwnAssignmentsAndPerExpertOnlyWhenAskedTo(bool detail)
    {
        var key = new ExpertGroupKey("m", 1, 2, 1);
        var seen = new List<(string Instrument, long Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Qwen3Cluster" && instrument.Name.StartsWith("qwen3.expert.")) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var t = new Dictionary<string, object?>();
            foreach (var tag in tags) t[tag.Key] = tag.Value;
            // Other tests' grains may count at the same time: keep this key's measurements only.
            if (instrument.Name == "qwen3.expert.routed_tokens" && !Equals(t["stage"], 1)) return;
            if (instrument.Name == "qwen3.expert.layer_routed_tokens" && !Equals(t["layer"], 7)) return;
            lock (seen) seen.Add((instrument.Name, value, t));
        });
        listener.Start();

        // Experts [4, 8) of a top-2 routing of four tokens: 4, 5, 5, 7 are this group's; 0, 1, 9, 3 are not.
        long routed = ShardMetrics.Record(key, layer: 7, new Qwen3Cluster.Model.Layers.ExpertRange(4, 8), [4, 0, 5, 1, 5, 9, 7, 3], detail);
        Assert.Equal(4, routed);
        var group = Assert.Single(seen, s => s.Instrument == "qwen3.expert.routed_tokens");
        Assert.Equal(4, group.Value);
        Assert.Equal((object?)2, group.Tags["group"]);
        Assert.Equal((object?)1, group.Tags["copy"]);
        var perExpert = seen.Where(s => s.Instrument == "qwen3.expert.layer_routed_tokens")
            .ToDictionary(s => (int)s.Tags["expert"]!, s => s.Value);
        if (detail) Assert.Equal(new Dictionary<int, long> { [4] = 1, [5] = 2, [7] = 1 }, perExpert);
        else Assert.Empty(perExpert);

        // The second slice of a sliced range runs the same assignments: it returns them, and the counters take them
        // from the first slice only, so their sums stay the assignments routed.
        seen.Clear();
        Assert.Equal(4, ShardMetrics.Record(key with { Group = 3 }, layer: 7, new Qwen3Cluster.Model.Layers.ExpertRange(4, 8, 1, 2), [4, 0, 5, 1, 5, 9, 7, 3], detail));
        Assert.Empty(seen);
    }
}
