using Xunit.Abstractions;
using Orleans.Runtime;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.ClusterTests;

/// <summary>
/// A checkpoint whose routers favour expert 0, served with four expert groups over two experts silos: group 0 gets
/// most of the tokens, so it gets a copy on the other experts silo that takes a share of them; the outputs stay
/// those of the single-process engine, and the copy is dropped and unloaded once the load is gone.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class HotExpertCopyTests(ITestOutputHelper output)
{
    static readonly (string, string)[] Silos = [("silo-a", "gateway,stage"), ("silo-b", "experts"), ("silo-c", "experts")];

    static readonly Dictionary<string, string> Settings = new()
    {
        ["Qwen3:HotExperts:WindowSeconds"] = "0.5",
        ["Qwen3:HotExperts:HotWindows"] = "2",
        ["Qwen3:HotExperts:HotRatio"] = "1.5",
        ["Qwen3:HotExperts:MinAssignments"] = "32",
        ["Qwen3:HotExperts:IdleSeconds"] = "2",
    };

    [Fact]
    public async Task AHotGroupGetsACopyThatSharesItsTokensWithoutChangingAnOutput()
    {
        string dir = TestCheckpoints.Get("small-moe", TestCheckpoints.SmallMoe, favouredExperts: [0]);
        await using var cluster = await ModelCluster.StartAsync(dir, Silos, stages: 1, expertGroups: 4, settings: Settings);
        await cluster.Replica().Warmup();
        var stage = cluster.Client.GetStage(new StageKey(cluster.Model, 0, 0));
        var hot = new ExpertGroupKey(cluster.Model, 0, 0);
        var primary = cluster.Client.GetExpertGroup(hot);
        var copy = cluster.Client.GetExpertGroup(hot.WithCopy(1));

        using var local = LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 256, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(local, new SchedulerOptions { NumBlocks = 256, BlockSize = 4, PrefixCaching = false }, []);
        int[] Prompt(int i) => Enumerable.Range(0, 5 + 2 * i).Select(j => (j * 61 + i * 97) % 500 + 1).ToArray();
        const int tokens = 24;
        var expected = new List<EngineRunner.Result>();
        for (int i = 0; i < 6; i++) expected.Add(await EngineRunner.RunAsync(engine, EngineRunner.Greedy(Prompt(i), tokens, logprobs: 1)));
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = tokens, Logprobs = 1, IgnoreEos = true };

        // Rounds of six streams until one has run from start to end with the copy serving.
        var deadline = DateTime.UtcNow.AddSeconds(90);
        long copyRouted = 0, primaryRouted = 0;
        int rounds = 0;
        while (true)
        {
            Assert.True(DateTime.UtcNow < deadline, $"no copy of the hot group served a whole round in {rounds} rounds");
            bool servingBefore = (await stage.Host()).Copies![0] >= 1;
            var copyBefore = servingBefore ? (await copy.Host()).RoutedTokens : 0;
            var primaryBefore = (await primary.Host()).RoutedTokens;
            var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => cluster.GenerateAsync(Prompt(i), sampling)));
            rounds++;
            for (int i = 0; i < 6; i++) Compare.SameTokensAndLogprobs(expected[i], results[i]);
            var copies = (await stage.Host()).Copies!;
            if (!servingBefore || copies[0] < 1) continue;
            Assert.Equal([0, 0, 0], copies[1..]);
            copyRouted = (await copy.Host()).RoutedTokens - copyBefore;
            primaryRouted = (await primary.Host()).RoutedTokens - primaryBefore;
            break;
        }

        // The copy runs on the other experts silo, and the group's tokens were split between the two.
        var copyHost = await copy.Host();
        var primaryHost = await primary.Host();
        Assert.True(copyHost.Loaded);
        Assert.NotEqual(primaryHost.SiloName, copyHost.SiloName);
        Assert.Contains(copyHost.SiloName, new[] { "silo-b", "silo-c" });
        double share = (double)copyRouted / (copyRouted + primaryRouted);
        Assert.InRange(share, 0.3, 0.7);
        var routed = await Task.WhenAll(Enumerable.Range(0, 4).Select(async g =>
            (await cluster.Client.GetExpertGroup(new ExpertGroupKey(cluster.Model, 0, g)).Host()).RoutedTokens));
        output.WriteLine($"copy on {copyHost.SiloName} (group on {primaryHost.SiloName}) served from round {rounds}; " +
            $"its share of the group's assignments in that round: {share:P0}; routed per group since start: {string.Join(", ", routed)} " +
            $"(+ {copyHost.RoutedTokens} by the copy)");
        // The hot group's load, copy included, is the largest.
        Assert.All(routed[1..], r => Assert.True(r < routed[0] + copyHost.RoutedTokens));

        // No load: the copy is dropped, and then unloads.
        var management = cluster.Client.GetGrain<IManagementGrain>(0);
        var quiet = DateTime.UtcNow.AddSeconds(30);
        var idle = System.Diagnostics.Stopwatch.StartNew();
        while ((await stage.Host()).Copies![0] > 0 || await management.GetGrainActivationCount((GrainReference)(object)copy) > 0)
        {
            Assert.True(DateTime.UtcNow < quiet, "the copy outlived the load");
            await Task.Delay(200);
        }
        output.WriteLine($"copy dropped and unloaded {idle.Elapsed.TotalSeconds:F1}s after the load stopped");
        var after = await cluster.GenerateAsync(Prompt(0), sampling);
        Compare.SameTokensAndLogprobs(expected[0], after);
    }
}
