using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Engine;

/// <summary>Hot-expert copies: splitting a group's tokens between copies changes no output.</summary>
public sealed class HotExpertSplitTests
{
    /// <summary>Both layers' experts of SmallMoe, cut into two groups, and routing of <paramref name="tokens"/> tokens.</summary>
    static (ExpertGroup[] Groups, ExpertRange[] Ranges, Tensor X, Routing Routing) Setup(int tokens, int seed)
    {
        var config = TestCheckpoints.SmallMoe;
        string dir = TestCheckpoints.Get("small-moe", config);
        using var reader = CheckpointReader.Open(dir);
        using var weights = new CheckpointWeights(reader, new Device("cpu"));
        var ranges = ExpertRange.Split(config.NumExperts, 2);
        var groups = ranges.Select(r => new ExpertGroup(config, 0, r, weights)).ToArray();
        var generator = new TorchSharp.torch.Generator((ulong)seed, new Device("cpu"));
        var x = randn([tokens, config.HiddenSize], generator: generator);
        var logits = randn([tokens, config.NumExperts], generator: generator);
        var (values, ids) = logits.topk(config.NumExpertsPerTok, dim: 1);
        var routing = new Routing(ids, values.softmax(1));
        return (groups, ranges, x, routing);
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(5, 2)]
    [InlineData(37, 3)]
    public async Task SplittingAGroupBetweenCopiesChangesNoOutput(int tokens, int copies)
    {
        var (groups, ranges, x, routing) = Setup(tokens, tokens);
        var seen = new List<(int Group, int Copy, long Tokens)>();
        ValueTask<ExpertGroupOutput> Run(int g, int copy, int layer, Tensor xs, Tensor ids, Tensor w, CancellationToken _)
        {
            lock (seen) seen.Add((g, copy, xs.shape[0]));
            var output = groups[g].Forward(xs, ids, w);
            return ValueTask.FromResult<ExpertGroupOutput>(() => ValueTask.FromResult(output));
        }

        var plain = new PartitionedExperts(ranges, Run);
        using var expected = await plain.RunAsync(0, x, routing, default);
        Assert.All(seen, s => Assert.Equal(0, s.Copy));
        seen.Clear();

        var split = new PartitionedExperts(ranges, Run, g => g == 0 ? copies : 1);
        for (int step = 0; step < copies; step++)
        {
            using var actual = await split.RunAsync(0, x, routing, default);
            Assert.Equal(0f, (actual - expected).abs().max().item<float>(), 6);
        }

        // Every token group 0 gets goes to exactly one copy; with fewer tokens than copies they take turns.
        using var host = routing.ExpertIds.cpu();
        var ids = host.data<long>().ToArray();
        int k = (int)routing.ExpertIds.shape[1];
        long picked = Enumerable.Range(0, tokens).Count(t => ids.Skip(t * k).Take(k).Any(ranges[0].Contains));
        var group0 = seen.Where(s => s.Group == 0).ToList();
        Assert.Equal(picked * copies, group0.Sum(s => s.Tokens));
        Assert.Equal(Enumerable.Range(0, copies), group0.Select(s => s.Copy).Distinct().Order());
        Assert.All(seen.Where(s => s.Group == 1), s => Assert.Equal(0, s.Copy));
        // Routed counts (token, expert) assignments per group, over all calls.
        Assert.Equal(ids.Count(ranges[0].Contains) * (copies + 1L), plain.Routed[0] + split.Routed[0]);
        Assert.Equal(ids.Length * (copies + 1L), plain.Routed.Sum() + split.Routed.Sum());
        foreach (var g in groups) g.Dispose();
    }
}
