using Xunit.Abstractions;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
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
        await Cluster.Replica().Warmup();
        Local = LocalModel.Load(Checkpoint, new LocalModelOptions { NumBlocks = 256, BlockSize = 4 });
    }

    /// <summary>The single-process reference: no prefix cache, so it reuses nothing the cluster might.</summary>
    public GenerationEngine LocalEngine() =>
        GenerationEngine.Start(Local, new SchedulerOptions { NumBlocks = 256, BlockSize = 4, PrefixCaching = false }, []);

    public async Task DisposeAsync()
    {
        Local.Dispose();
        await Cluster.DisposeAsync();
    }
}

/// <summary>
/// The cluster tests share one MoE cluster and never run beside another test's cluster (the assembly runs one
/// collection at a time): several three-silo clusters at once on two cores only measure the machine.
/// </summary>
[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<MoeClusterFixture>
{
    public const string Name = "moe cluster";
}

static class Compare
{
    public static void SameTokensAndLogprobs(EngineRunner.Result expected, Generated actual)
    {
        Assert.Equal(expected.Ids, actual.Ids);
        for (int i = 0; i < expected.Ids.Length; i++) Assert.InRange(actual.Logprobs[i] - expected.Tokens[i].Logprob, -1e-4, 1e-4);
    }
}

[Collection(ClusterCollection.Name)]
public sealed class ServingTests(MoeClusterFixture fixture)
{
    static SamplingParams Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens, Logprobs = 2, IgnoreEos = true };

    static int[] Prompt(int i) => Enumerable.Range(0, 3 + i * 2 % 11).Select(j => (j * 37 + i * 101) % 500 + 1).ToArray();

    [Fact]
    public async Task SixteenConcurrentRequestsEqualOneAtATimeAndRunAsBatchedSteps()
    {
        var cluster = fixture.Cluster;
        await using var local = fixture.LocalEngine();
        var single = new List<EngineRunner.Result>();
        for (int i = 0; i < 16; i++) single.Add(await EngineRunner.RunAsync(local, EngineRunner.Greedy(Prompt(i), 8, logprobs: 2)));

        var before = await cluster.Replica().Stats();
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => cluster.GenerateAsync(Prompt(i), Greedy(8))));
        var after = await cluster.Replica().Stats();

        for (int i = 0; i < 16; i++) Compare.SameTokensAndLogprobs(single[i], concurrent[i]);
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
            if (t == 2) await fixture.Cluster.Replica().DropCache(SessionCache.Key(id));
            var updates = new List<GenerationUpdate>();
            int[] turnTokens = newTokens[t];
            await foreach (var u in turns.RunAsync(id, "alice", h => [.. h, .. turnTokens], Greedy(6))) updates.Add(u);
            var result = Generated.From(updates);

            int[] conversation = [.. history, .. turnTokens];
            var scratch = await EngineRunner.RunAsync(local, EngineRunner.Greedy(conversation, 6, logprobs: 2));
            Compare.SameTokensAndLogprobs(scratch, result);
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
        var stats = await fixture.Cluster.WaitForStatsAsync(s => Task.FromResult(s.ParkedCaches.Contains(SessionCache.Key(id))));
        Assert.Contains(SessionCache.Key(id), stats.ParkedCaches);
        Assert.True(stats.UsedBlocks > 0);
        Assert.False(await session.Delete("mallory"));
        Assert.True(await session.Delete("bob"));
        stats = await fixture.Cluster.WaitForStatsAsync(s => Task.FromResult(s.UsedBlocks == 0));
        Assert.Equal(0, stats.UsedBlocks);
        Assert.DoesNotContain(SessionCache.Key(id), stats.ParkedCaches);
        Assert.Null(await session.Get("bob"));
    }

    [Fact]
    public async Task AnExpiredSessionFreesItsBlocks()
    {
        var client = fixture.Cluster.Client;
        string id = Guid.NewGuid().ToString("N");
        var session = client.GetGrain<ISessionGrain>(id);
        await session.Create("dave", fixture.Cluster.Model, ttlSeconds: 1);
        await foreach (var _ in new SessionTurns(client).RunAsync(id, "dave", h => [.. h, 7, 8, 9, 10, 11],
            new SamplingParams { Temperature = 0, MaxTokens = 3, IgnoreEos = true })) { }
        string key = SessionCache.Key(id);
        var stats = await fixture.Cluster.WaitForStatsAsync(async s => !s.ParkedCaches.Contains(key) && await session.Get("dave") is null);
        Assert.DoesNotContain(key, stats.ParkedCaches);
        Assert.Null(await session.Get("dave"));
    }

    [Fact]
    public async Task ASessionDeletedMidTurnIsGoneAndItsCacheFreedWhenTheTurnEnds()
    {
        var client = fixture.Cluster.Client;
        string id = Guid.NewGuid().ToString("N");
        var session = client.GetGrain<ISessionGrain>(id);
        await session.Create("erin", fixture.Cluster.Model, 600);
        var before = await fixture.Cluster.Replica().Stats();
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 40, IgnoreEos = true };
        bool deleted = false;
        await foreach (var _ in new SessionTurns(client).RunAsync(id, "erin", h => [.. h, 1, 2, 3, 4, 5, 6], sampling))
        {
            if (!deleted)
            {
                Assert.True(await session.Delete("erin"));
                Assert.Null(await session.Get("erin"));
                deleted = true;
            }
        }

        var stats = await fixture.Cluster.WaitForStatsAsync(s => Task.FromResult(s.UsedBlocks == before.UsedBlocks));
        Assert.DoesNotContain(SessionCache.Key(id), stats.ParkedCaches);
        Assert.Equal(before.UsedBlocks, stats.UsedBlocks);
        Assert.Null(await session.Get("erin"));
    }
}

/// <summary>A silo holding a stage and expert groups dies mid-conversation.</summary>
[Collection(ClusterCollection.Name)]
public sealed class SiloFailureTests
{
    [Theory]
    [InlineData("redis")]
    [InlineData("adonet")]
    public async Task ASessionWhoseStageSiloDiedStillAnswersIdentically(string storage)
    {
        // The session's state must outlive the silo too, wherever it was placed: in a real store, as a deployment
        // with a membership store keeps it (in-memory grain storage dies with the silo that holds it). PostgreSQL
        // starts empty: the silos create Orleans' tables themselves.
        await using IAsyncDisposable server = storage == "redis" ? await RedisServer.StartAsync() : await PostgresServer.StartAsync();
        string connection = server is RedisServer redis ? redis.ConnectionString : ((PostgresServer)server).ConnectionString;
        string dir = ClusterEquivalenceTests.Checkpoint("moe");
        await using var cluster = await ModelCluster.StartAsync(dir, ClusterEquivalenceTests.Silos, stages: 2, expertGroups: 2,
            settings: new() { ["Qwen3:Sessions:Storage"] = storage, ["Qwen3:Sessions:ConnectionString"] = connection });
        await cluster.Replica().Warmup();
        using var local = LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 128, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(local, new SchedulerOptions { NumBlocks = 128, BlockSize = 4, PrefixCaching = false }, []);

        string id = Guid.NewGuid().ToString("N");
        await cluster.Client.GetGrain<ISessionGrain>(id).Create("carol", cluster.Model, 600);
        var turns = new SessionTurns(cluster.Client);
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 6, Logprobs = 1, IgnoreEos = true };
        var history = new List<int>();
        foreach (var (turn, killFirst) in new[] { (new[] { 3, 1, 4, 1, 5, 9, 2, 6 }, false), (new[] { 5, 3, 5 }, true) })
        {
            if (killFirst)
            {
                var siloB = cluster.Cluster.Silos.Single(s => s.Name.Contains('1'));
                await cluster.Cluster.KillSiloAsync(siloB);
                await cluster.Cluster.WaitForLivenessToStabilizeAsync();
            }
            var updates = new List<GenerationUpdate>();
            await foreach (var u in turns.RunAsync(id, "carol", h => [.. h, .. turn], sampling)) updates.Add(u);
            var result = Generated.From(updates);
            var scratch = await EngineRunner.RunAsync(engine, EngineRunner.Greedy([.. history, .. turn], 6, logprobs: 1));
            Compare.SameTokensAndLogprobs(scratch, result);
            history.AddRange(turn);
            history.AddRange(result.Ids);
        }
        if (server is PostgresServer postgres)
        {
            // The session is a row of Orleans' storage table, which the silos created.
            await using var db = new Npgsql.NpgsqlConnection(postgres.ConnectionString);
            await db.OpenAsync();
            await using var rows = new Npgsql.NpgsqlCommand("SELECT count(*) FROM orleansstorage", db);
            Assert.Equal(1L, (long)(await rows.ExecuteScalarAsync())!);
        }
        var stage1 = await cluster.Client.GetStage(new StageKey(cluster.Model, 0, 1)).EnsureLoaded();
        Assert.Equal("silo-a", stage1.SiloName);
        var group0 = await cluster.Client.GetExpertGroup(new ExpertGroupKey(cluster.Model, 0, 0)).EnsureLoaded();
        Assert.Equal("silo-c", group0.SiloName);
    }
}

/// <summary>The silo that hosts a stage (and expert groups) dies while six greedy streams are decoding.</summary>
[Collection(ClusterCollection.Name)]
public sealed class MidStreamStageFailureTests
{
    [Fact]
    public async Task SixStreamsOutliveTheDeathOfTheSiloHostingAStage()
    {
        string dir = ClusterEquivalenceTests.Checkpoint("moe");
        await using var cluster = await ModelCluster.StartAsync(dir, ClusterEquivalenceTests.Silos, stages: 2, expertGroups: 2);
        await cluster.Replica().Warmup();
        Assert.Equal("silo-b", (await cluster.Client.GetStage(new StageKey(cluster.Model, 0, 1)).EnsureLoaded()).SiloName);
        using var local = LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 256, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(local, new SchedulerOptions { NumBlocks = 256, BlockSize = 4, PrefixCaching = false }, []);

        int[] Prompt(int i) => Enumerable.Range(0, 4 + 3 * i).Select(j => (j * 53 + i * 211) % 400 + 1).ToArray();
        const int tokens = 120;
        var expected = new List<EngineRunner.Result>();
        for (int i = 0; i < 6; i++) expected.Add(await EngineRunner.RunAsync(engine, EngineRunner.Greedy(Prompt(i), tokens, logprobs: 1)));

        var sampling = new SamplingParams { Temperature = 0, MaxTokens = tokens, Logprobs = 1, IgnoreEos = true };
        var received = new int[6];
        var streams = Enumerable.Range(0, 6).Select(async i =>
        {
            var updates = new List<GenerationUpdate>();
            await foreach (var u in cluster.Replica().Generate(new GenerationRequest(Prompt(i), sampling)))
            {
                updates.Add(u);
                Interlocked.Add(ref received[i], u.Tokens.Count);
            }
            return Generated.From(updates);
        }).ToArray();
        while (received.Any(r => Volatile.Read(ref r) < 3)) await Task.Delay(5);
        Assert.All(received, r => Assert.True(r < tokens, "a stream finished before the silo died"));
        await cluster.Cluster.KillSiloAsync(cluster.Cluster.Silos.Single(s => s.Name.Contains('1')));

        var results = await Task.WhenAll(streams);
        for (int i = 0; i < 6; i++) Compare.SameTokensAndLogprobs(expected[i], results[i]);
        // The stage and the expert group the dead silo held now run on the silos left.
        Assert.Equal("silo-a", (await cluster.Client.GetStage(new StageKey(cluster.Model, 0, 1)).EnsureLoaded()).SiloName);
        Assert.Equal("silo-c", (await cluster.Client.GetExpertGroup(new ExpertGroupKey(cluster.Model, 1, 0)).EnsureLoaded()).SiloName);
    }
}


/// <summary>An experts silo stops gracefully while six greedy streams decode: it hands its group over first.</summary>
[Collection(ClusterCollection.Name)]
public sealed class GracefulLeaveTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ASiloThatLeavesHandsItsGroupOverAndNoStreamChanges()
    {
        string dir = ClusterEquivalenceTests.Checkpoint("moe");
        (string, string)[] silos = [("silo-a", "gateway,stage"), ("silo-b", "experts"), ("silo-c", "experts")];
        await using var cluster = await ModelCluster.StartAsync(dir, silos, stages: 1, expertGroups: 2);
        await cluster.Replica().Warmup();
        var leaving = cluster.Client.GetExpertGroup(new ExpertGroupKey(cluster.Model, 0, 1));
        Assert.Equal("silo-c", (await leaving.Host()).SiloName);
        using var local = LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 256, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(local, new SchedulerOptions { NumBlocks = 256, BlockSize = 4, PrefixCaching = false }, []);

        int[] Prompt(int i) => Enumerable.Range(0, 6 + 2 * i).Select(j => (j * 29 + i * 131) % 400 + 1).ToArray();
        const int tokens = 200;
        var expected = new List<EngineRunner.Result>();
        for (int i = 0; i < 6; i++) expected.Add(await EngineRunner.RunAsync(engine, EngineRunner.Greedy(Prompt(i), tokens, logprobs: 1)));
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = tokens, Logprobs = 1, IgnoreEos = true };
        var received = new int[6];
        long lastToken = System.Diagnostics.Stopwatch.GetTimestamp();
        double longestGap = 0;
        var streams = Enumerable.Range(0, 6).Select(async i =>
        {
            var updates = new List<GenerationUpdate>();
            await foreach (var u in cluster.Replica().Generate(new GenerationRequest(Prompt(i), sampling)))
            {
                updates.Add(u);
                Interlocked.Add(ref received[i], u.Tokens.Count);
                lock (received)
                {
                    longestGap = Math.Max(longestGap, System.Diagnostics.Stopwatch.GetElapsedTime(lastToken).TotalSeconds);
                    lastToken = System.Diagnostics.Stopwatch.GetTimestamp();
                }
            }
            return Generated.From(updates);
        }).ToArray();
        while (received.Any(r => Volatile.Read(ref r) < 3)) await Task.Delay(5);
        Assert.All(received, r => Assert.True(r < tokens, "a stream finished before the silo began to leave"));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await cluster.Cluster.StopSiloAsync(cluster.Cluster.Silos.Single(s => s.Name.EndsWith('2')));
        double left = clock.Elapsed.TotalSeconds;
        // Its new activation on silo B took weights that silo B loaded before the move, not on a call that waited.
        var host = await leaving.Host();
        Assert.Equal("silo-b", host.SiloName);
        Assert.True(host.HandedOver, "the group was not handed over: its new activation loaded its own weights");

        var results = await Task.WhenAll(streams);
        for (int i = 0; i < 6; i++) Compare.SameTokensAndLogprobs(expected[i], results[i]);
        output.WriteLine($"silo-c left in {left:F1}s; the longest gap between tokens any stream saw: {longestGap:F2}s");
    }
}
