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
            // Turn 2 reuses all of turn 1 (prompt + reply). Turn 3's parked cache was dropped: only the history's
            // full blocks (of 4 tokens), still findable by the prefix cache, are reused.
            Assert.Equal(t < 2 ? history.Count : history.Count / 4 * 4, result.Usage.CachedPromptTokens);
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
        var stats = await fixture.Cluster.WaitForStatsAsync(s => Task.FromResult(s.ParkedCaches.Contains(GrainKeys.SessionCache(id))));
        Assert.Contains(GrainKeys.SessionCache(id), stats.ParkedCaches);
        Assert.True(stats.UsedBlocks > 0);
        Assert.False(await session.Delete("mallory"));
        Assert.True(await session.Delete("bob"));
        stats = await fixture.Cluster.WaitForStatsAsync(s => Task.FromResult(s.UsedBlocks == 0));
        Assert.Equal(0, stats.UsedBlocks);
        Assert.DoesNotContain(GrainKeys.SessionCache(id), stats.ParkedCaches);
        Assert.Null(await session.Get("bob"));
    }
}

/// <summary>A silo holding a stage and expert groups dies mid-conversation.</summary>
public sealed class SiloFailureTests
{
    [Fact]
    public async Task ASessionWhoseStageSiloDiedStillAnswersIdentically()
    {
        string dir = ClusterEquivalenceTests.Checkpoint("moe");
        await using var cluster = await ModelCluster.StartAsync(dir, ClusterEquivalenceTests.Silos, stages: 2, expertGroups: 2);
        await cluster.Gateway().Warmup();
        using var local = Qwen3Cluster.Model.Engine.LocalModel.Load(dir, new Qwen3Cluster.Model.Engine.LocalModelOptions { NumBlocks = 128, BlockSize = 4 });
        await using var engine = new Qwen3Cluster.Model.Engine.GenerationEngine(local,
            new Qwen3Cluster.Model.Engine.SchedulerOptions { NumBlocks = 128, BlockSize = 4 }, local.Config.VocabSize, [], null);

        string id = Guid.NewGuid().ToString("N");
        await cluster.Client.GetGrain<ISessionGrain>(id).Create("carol", cluster.Model, 600);
        var turns = new SessionTurns(cluster.Client);
        var sampling = new SamplingWire { Temperature = 0, MaxTokens = 6, Logprobs = 1, IgnoreEos = true };
        var history = new List<int>();
        foreach (var (turn, killFirst) in new[] { (new[] { 3, 1, 4, 1, 5, 9, 2, 6 }, false), (new[] { 5, 3, 5 }, true) })
        {
            if (killFirst)
            {
                var siloB = cluster.Cluster.Silos.Single(s => s.Name.Contains('1'));
                await cluster.Cluster.KillSiloAsync(siloB);
                await cluster.Cluster.WaitForLivenessToStabilizeAsync();
            }
            var events = new List<GenerationEvent>();
            await foreach (var e in turns.RunAsync(id, "carol", h => [.. h, .. turn], sampling)) events.Add(e);
            var result = ModelCluster.Collect(events);
            var scratch = await EngineRunner.RunAsync(engine, EngineRunner.Greedy([.. history, .. turn], 6, logprobs: 1));
            Assert.Equal(scratch.Ids, result.Ids);
            history.AddRange(turn);
            history.AddRange(result.Ids);
        }
        var stage1 = await cluster.Client.GetGrain<IPipelineStageGrain>(GrainKeys.Stage(cluster.Model, 0, 1)).EnsureLoaded();
        Assert.Equal("silo-a", stage1.SiloName);
        var group0 = await cluster.Client.GetGrain<IExpertGroupGrain>(GrainKeys.ExpertGroup(cluster.Model, 0, 0)).EnsureLoaded();
        Assert.Equal("silo-c", group0.SiloName);
    }
}

/// <summary>A session left idle past its time to live frees its cache and disappears.</summary>
public sealed class SessionExpiryTests(MoeClusterFixture fixture) : IClassFixture<MoeClusterFixture>
{
    [Fact]
    public async Task AnExpiredSessionFreesItsBlocks()
    {
        var client = fixture.Cluster.Client;
        string id = Guid.NewGuid().ToString("N");
        var session = client.GetGrain<ISessionGrain>(id);
        await session.Create("dave", fixture.Cluster.Model, ttlSeconds: 1);
        await foreach (var _ in new SessionTurns(client).RunAsync(id, "dave", h => [.. h, 7, 8, 9, 10, 11],
            new SamplingWire { Temperature = 0, MaxTokens = 3, IgnoreEos = true })) { }
        string key = GrainKeys.SessionCache(id);
        var stats = await fixture.Cluster.WaitForStatsAsync(async s => !s.ParkedCaches.Contains(key) && await session.Get("dave") is null);
        Assert.DoesNotContain(key, stats.ParkedCaches);
        Assert.Null(await session.Get("dave"));
    }
}

/// <summary>Deleting a session while one of its turns streams.</summary>
public sealed class SessionDeleteTests(MoeClusterFixture fixture) : IClassFixture<MoeClusterFixture>
{
    [Fact]
    public async Task ASessionDeletedMidTurnIsGoneAndItsCacheFreedWhenTheTurnEnds()
    {
        var client = fixture.Cluster.Client;
        string id = Guid.NewGuid().ToString("N");
        var session = client.GetGrain<ISessionGrain>(id);
        await session.Create("erin", fixture.Cluster.Model, 600);
        var before = await fixture.Cluster.Gateway().Stats();
        var sampling = new SamplingWire { Temperature = 0, MaxTokens = 40, IgnoreEos = true };
        bool deleted = false;
        await foreach (var e in new SessionTurns(client).RunAsync(id, "erin", h => [.. h, 1, 2, 3, 4, 5, 6], sampling))
            if (!deleted)
            {
                Assert.True(await session.Delete("erin"));
                Assert.Null(await session.Get("erin"));
                deleted = true;
            }
        var stats = await fixture.Cluster.WaitForStatsAsync(s => Task.FromResult(s.UsedBlocks == before.UsedBlocks));
        Assert.DoesNotContain(GrainKeys.SessionCache(id), stats.ParkedCaches);
        Assert.Equal(before.UsedBlocks, stats.UsedBlocks);
        Assert.Null(await session.Get("erin"));
    }
}
