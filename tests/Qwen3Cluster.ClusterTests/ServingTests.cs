using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.ClusterTests;

/// <summary>One MoE cluster (2 stages, 4 expert groups over three silos) shared by the serving tests.</summary>
public sealed class MoeClusterFixture : IAsyncLifetime
{
    public ModelCluster Cluster { get; private set; } = null!;
    public LocalModel Local { get; private set; } = null!;
    public string Checkpoint => ClusterEquivalenceTests.Checkpoint("moe");

    public async Task InitializeAsync()
    {
        Cluster = await ModelCluster.StartAsync(Checkpoint, ClusterEquivalenceTests.Silos, stages: 2, expertGroups: 4, kvBlocks: 256, blockSize: 4);
        await Cluster.Gateway().Warmup();
        Local = LocalModel.Load(Checkpoint, new LocalModelOptions { NumBlocks = 256, BlockSize = 4 });
    }

    public GenerationEngine LocalEngine() =>
        new(Local, new SchedulerOptions { NumBlocks = 256, BlockSize = 4 }, Local.Config.VocabSize, [], null);

    public async Task DisposeAsync()
    {
        Local.Dispose();
        await Cluster.DisposeAsync();
    }
}

public sealed class ServingTests(MoeClusterFixture fixture) : IClassFixture<MoeClusterFixture>
{
    static SamplingWire Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens, Logprobs = 2, IgnoreEos = true };

    static int[] Prompt(int i) => Enumerable.Range(0, 3 + i * 2 % 11).Select(j => (j * 37 + i * 101) % 500 + 1).ToArray();

    [Fact]
    public async Task SixteenConcurrentRequestsEqualOneAtATimeAndRunAsBatchedSteps()
    {
        var cluster = fixture.Cluster;
        var single = new List<(int[] Ids, float[] Logprobs, int[][] Top, UsageWire Usage, string Finish)>();
        for (int i = 0; i < 16; i++) single.Add(await cluster.GenerateAsync(Prompt(i), Greedy(8)));

        var before = await cluster.Gateway().Stats();
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => cluster.GenerateAsync(Prompt(i), Greedy(8))));
        var after = await cluster.Gateway().Stats();

        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(single[i].Ids, concurrent[i].Ids);
            for (int t = 0; t < single[i].Ids.Length; t++) Assert.InRange(concurrent[i].Logprobs[t] - single[i].Logprobs[t], -1e-4, 1e-4);
        }
        long steps = after.Steps - before.Steps;
        Assert.True(steps < 16 * 8 / 2, $"{steps} steps for 16 requests of 8 tokens: they were not batched");
        Assert.Equal(2 * steps, after.StageCalls - before.StageCalls);
        Assert.Equal(before.UsedBlocks, after.UsedBlocks);
    }

    [Fact]
    public async Task SessionTurnsReuseTheCacheAndEqualAFromScratchRun()
    {
        var client = fixture.Cluster.Client;
        string id = Guid.NewGuid().ToString("N");
        await client.GetGrain<ISessionGrain>(id).Create("alice", fixture.Cluster.Model, 600);
        var turns = new SessionTurns(client);
        int[][] newTokens = [[11, 12, 13, 14, 15], [21, 22, 23], [31, 32, 33, 34]];
        await using var local = fixture.LocalEngine();
        var history = new List<int>();
        for (int t = 0; t < newTokens.Length; t++)
        {
            if (t == 2) await fixture.Cluster.Gateway().DropCache(GrainKeys.SessionCache(id));
            var events = new List<GenerationEvent>();
            int[] turnTokens = newTokens[t];
            await foreach (var e in turns.RunAsync(id, "alice", h => [.. h, .. turnTokens], Greedy(6))) events.Add(e);
            var result = ModelCluster.Collect(events);

            int[] conversation = [.. history, .. turnTokens];
            var scratch = await EngineRunner.RunAsync(local, EngineRunner.Greedy(conversation, 6, logprobs: 2));
            Assert.Equal(scratch.Ids, result.Ids);
            for (int i = 0; i < scratch.Ids.Length; i++) Assert.InRange(result.Logprobs[i] - scratch.Tokens[i].Logprob, -1e-4, 1e-4);
            Assert.Equal(conversation.Length, result.Usage.PromptTokens);
            // Turn 2 reuses all of turn 1 (prompt + reply); turn 3's cache was dropped, so it recomputes.
            Assert.Equal(t == 1 ? history.Count : 0, result.Usage.CachedPromptTokens);
            history.AddRange(turnTokens);
            history.AddRange(result.Ids);
        }
        var info = await client.GetGrain<ISessionGrain>(id).Get("alice");
        Assert.Equal(history.Count, info!.HistoryTokens);
        Assert.Null(await client.GetGrain<ISessionGrain>(id).Get("mallory"));
        Assert.True(await client.GetGrain<ISessionGrain>(id).Delete("alice"));
    }

    [Fact]
    public async Task DeletingASessionFreesItsBlocks()
    {
        var client = fixture.Cluster.Client;
        string id = Guid.NewGuid().ToString("N");
        var session = client.GetGrain<ISessionGrain>(id);
        await session.Create("bob", fixture.Cluster.Model, 600);
        await foreach (var _ in new SessionTurns(client).RunAsync(id, "bob", h => [.. h, 1, 2, 3, 4, 5, 6, 7, 8, 9], Greedy(5))) { }
        var stats = await WaitForParkedAsync(GrainKeys.SessionCache(id));
        Assert.True(stats.UsedBlocks > 0);
        Assert.False(await session.Delete("mallory"));
        Assert.True(await session.Delete("bob"));
        stats = await fixture.Cluster.Gateway().Stats();
        for (int i = 0; i < 50 && stats.UsedBlocks > 0; i++)
        {
            await Task.Delay(50);
            stats = await fixture.Cluster.Gateway().Stats();
        }
        Assert.Equal(0, stats.UsedBlocks);
        Assert.DoesNotContain(GrainKeys.SessionCache(id), stats.ParkedCaches);
        Assert.Null(await session.Get("bob"));
    }

    async Task<ReplicaStats> WaitForParkedAsync(string key)
    {
        for (int i = 0; i < 100; i++)
        {
            var stats = await fixture.Cluster.Gateway().Stats();
            if (stats.ParkedCaches.Contains(key)) return stats;
            await Task.Delay(50);
        }
        throw new TimeoutException($"{key} was never parked.");
    }
}
