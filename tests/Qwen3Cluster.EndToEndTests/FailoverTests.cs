using System.Diagnostics;
using Grpc.Core;
using Grpc.Net.Client;
using Qwen3Cluster.Protos.V1;
using Xunit.Abstractions;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>A cluster of its own for the tests that kill, add and remove silos (run.sh restarts what is killed).</summary>
public sealed class FailoverClusterFixture : IAsyncLifetime
{
    public const int Streams = 6;
    public const int Tokens = 128;

    public Processes.Running Script { get; private set; } = null!;
    public GrpcChannel Channel { get; private set; } = null!;
    public string Model { get; private set; } = "";
    public int Ports { get; private set; }
    public string Clustering { get; } = new LocalClusterFixture().Clustering;
    public int RedisPort { get; } = Processes.FreePort();

    /// <summary>How many times run.sh has started a silo again.</summary>
    public int Restarts() => Script.Output.Split('\n').Count(line => line.StartsWith("restarting silo-"));
    /// <summary>What the single-process engine (qwen3 generate) answers to each stream's prompt.</summary>
    public GenerateJson[] Expected { get; private set; } = [];

    public async Task InitializeAsync()
    {
        Model = await TestModels.GetAsync("tiny-moe");
        (Script, Ports) = await LocalClusterFixture.StartScriptAsync(Model, Clustering, RedisPort);
        Channel = GrpcChannel.ForAddress($"http://127.0.0.1:{Ports}");
        var expected = new List<GenerateJson>();
        for (int i = 0; i < Streams; i++) expected.Add(await GenerateJson.RunAsync(Model, Prompt(i), Tokens));
        Expected = [.. expected];
    }

    public static int[] Prompt(int i) => Enumerable.Range(0, 6 + 5 * i).Select(j => 2000 + (j * 7919 + i * 15485863) % 90000).ToArray();

    /// <summary>The process that listens on this silo port (a silo started by run.sh or join.sh).</summary>
    public int SiloPid(int siloPort) => Process.GetProcesses().Single(p =>
    {
        try { return File.ReadAllText($"/proc/{p.Id}/environ").Contains($"Qwen3__Clustering__SiloPort={siloPort}\0"); }
        catch { return false; }
    }).Id;

    public async Task DisposeAsync()
    {
        Channel.Dispose();
        await Script.DisposeAsync();
    }
}

/// <summary>
/// Silos die, join and leave while six greedy streams run over the three-process cluster: every stream finishes with
/// the tokens and log-probs of the single-process engine, and the longest pause a client saw is reported.
/// </summary>
public sealed class FailoverTests(FailoverClusterFixture fixture, ITestOutputHelper output) : IClassFixture<FailoverClusterFixture>
{
    /// <summary>An expert group activated on silo E without a hand-over (the plan's placement of a group that had no activation).</summary>
    static readonly System.Text.RegularExpressions.Regex PlacedFresh =
        new(@"Expert group tiny-moe-1/experts/0/\d: loading \[\d+, \d+\) on silo silo-e[\s\S]*Expert group tiny-moe-1/experts/0/\d: loaded in");

    sealed record Stream(List<int> Ids, List<float> Logprobs, List<long> Arrivals)
    {
        public double LongestPauseSeconds => Arrivals.Zip(Arrivals.Skip(1), (a, b) => Stopwatch.GetElapsedTime(a, b).TotalSeconds).DefaultIfEmpty().Max();
    }

    /// <summary>
    /// Runs the six streams; <paramref name="disturb"/> starts from the reader that sees every stream with a few tokens
    /// (not from a poll: on two busy cores a poll can wake after the tiny model has decoded most of a stream), and each
    /// stream must then still have tokens to come, so the disturbance lands mid-stream.
    /// </summary>
    async Task<Stream[]> RunStreamsAsync(Func<Task>? disturb = null)
    {
        var client = new Inference.InferenceClient(fixture.Channel);
        var streams = Enumerable.Range(0, FailoverClusterFixture.Streams).Select(_ => new Stream([], [], [])).ToArray();
        int Count(Stream s) { lock (s) return s.Ids.Count; }
        int fired = 0;
        int[]? countsWhenDisturbed = null;
        Task disturbed = Task.CompletedTask;
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var running = streams.Select(async (s, i) =>
        {
            var request = new GenerateRequest
            {
                TokenIds = new TokenIds(),
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = FailoverClusterFixture.Tokens, Logprobs = 3 },
            };
            request.TokenIds.Ids.AddRange(FailoverClusterFixture.Prompt(i));
            using var call = client.Generate(request, cancellationToken: deadline.Token);
            await foreach (var response in call.ResponseStream.ReadAllAsync(deadline.Token))
            {
                lock (s)
                {
                    foreach (var t in response.Tokens)
                    {
                        s.Ids.Add(t.Id);
                        s.Logprobs.Add(t.Logprob);
                        s.Arrivals.Add(Stopwatch.GetTimestamp());
                    }
                }
                if (disturb is not null && Volatile.Read(ref fired) == 0 && streams.All(x => Count(x) >= 3)
                    && Interlocked.Exchange(ref fired, 1) == 0)
                {
                    countsWhenDisturbed = [.. streams.Select(Count)];
                    disturbed = Task.Run(disturb);
                }
            }
        }).ToArray();
        await Task.WhenAll(running);
        await disturbed;
        if (disturb is not null)
        {
            Assert.True(countsWhenDisturbed is not null, "a stream ended before every stream had 3 tokens");
            Assert.All(countsWhenDisturbed, n => Assert.InRange(n, 3, FailoverClusterFixture.Tokens - 10));
        }
        return streams;
    }

    void AssertUndisturbed(Stream[] streams, string what)
    {
        for (int i = 0; i < streams.Length; i++)
        {
            var expected = fixture.Expected[i];
            Assert.Equal(expected.Ids, streams[i].Ids);
            for (int t = 0; t < expected.Ids.Length; t++) Assert.InRange(streams[i].Logprobs[t] - expected.Logprobs[t], -1e-4, 1e-4);
        }
        output.WriteLine($"{what}: longest pause a client saw {streams.Max(s => s.LongestPauseSeconds):F2} s");
    }

    [Fact]
    public async Task AnExpertSiloKilledMidStreamCostsAPauseNotAToken()
    {
        int siloB = fixture.Ports + 3;
        int pid = fixture.SiloPid(siloB);
        var streams = await RunStreamsAsync(() =>
        {
            Process.GetProcessById(pid).Kill();
            return Task.CompletedTask;
        });
        AssertUndisturbed(streams, "SIGKILL of silo B");
        // run.sh starts it again, as Kubernetes would restart its pod.
        var restarted = Stopwatch.StartNew();
        while (!fixture.Script.Output.Contains("restarting silo-b") && restarted.Elapsed < TimeSpan.FromSeconds(60)) await Task.Delay(100);
        Assert.Contains("silo-b exited (137)", fixture.Script.Output);
        Assert.Contains("restarting silo-b", fixture.Script.Output);
    }

    [Fact]
    public async Task ASiloJoinedWithJoinShTakesOverFromAKilledOneAndLeavesOnSigterm()
    {
        var join = new Processes.Running(LocalClusterFixture.ScriptStart("join.sh", ["silo-d"], fixture.Model, fixture.Clustering,
            fixture.Ports, fixture.RedisPort));
        await using var _ = join;
        var joined = Stopwatch.StartNew();
        while (!join.Output.Contains("Application started") && joined.Elapsed < TimeSpan.FromMinutes(2))
        {
            Assert.False(join.Process.HasExited, join.Output);
            await Task.Delay(100);
        }
        Assert.Contains("silo-d (experts) joining the cluster", join.Output);
        // "Application started" comes before the other silos see D as active: until they do, a plan leaves D out.
        var cluster = new Cluster.ClusterClient(fixture.Channel);
        while (!(await cluster.DescribeClusterAsync(new DescribeClusterRequest())).Silos.Any(s => s.Name == "silo-d" && s.Status == "Active"))
        {
            Assert.True(joined.Elapsed < TimeSpan.FromMinutes(2), $"silo D was not active in 2 minutes:\n{join.Output}");
            await Task.Delay(200);
        }

        // Silo C holds an expert group whichever test ran first; with it gone, the plan over B and D gives D one
        // (placed on D when next called, or handed over to it by the plan that a join starts, whichever comes first).
        int pid = fixture.SiloPid(fixture.Ports + 4);
        var streams = await RunStreamsAsync(() =>
        {
            Process.GetProcessById(pid).Kill();
            return Task.CompletedTask;
        });
        AssertUndisturbed(streams, "SIGKILL of silo C with silo D joined");
        var servesOnD = new System.Text.RegularExpressions.Regex(
            @"Expert group tiny-moe-1/experts/0/\d: (loading \[\d+, \d+\) on silo silo-d|handed over to silo silo-d)");
        var placed = Stopwatch.StartNew();
        while (!servesOnD.IsMatch(join.Output))
        {
            Assert.True(placed.Elapsed < TimeSpan.FromSeconds(90), $"silo D got no expert group in 90 s after silo C died:\n{join.Output}");
            await RunStreamsAsync();
        }

        // SIGTERM: silo D leaves the cluster gracefully while streams run; its group is placed again on the others.
        await LeavesOnSigtermWhileStreamsRunAsync(join, "silo D");
    }

    [Fact]
    public async Task ASiloHostingTheStageKilledMidStreamCostsAPauseNotAToken()
    {
        // silo-0 (stage role) sorts before silo-a, so the plan gives it stage 0: it takes the stage over from silo A.
        var join = new Processes.Running(LocalClusterFixture.ScriptStart("join.sh", ["silo-0", "stage"], fixture.Model, fixture.Clustering,
            fixture.Ports, fixture.RedisPort));
        await using var _ = join;
        var clock = Stopwatch.StartNew();
        while (!join.Output.Contains("Stage tiny-moe-1/0/stage/0: handed over to silo silo-0"))
        {
            Assert.False(join.Process.HasExited, join.Output);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"silo-0 did not take the stage over in 90 s:\n{join.Output}");
            await Task.Delay(100);
        }
        var cluster = await new Cluster.ClusterClient(fixture.Channel).DescribeClusterAsync(new DescribeClusterRequest());
        Assert.Contains(cluster.Grains, g => g.Kind == "stage" && g.Silo == "silo-0" && g.Loaded && g.HandedOver);
        Assert.Contains(cluster.Grains, g => g.Kind == "replica" && g.Silo == "silo-a");

        // The replica on silo A decodes through the stage on silo-0, which dies with its KV pool: the stage is
        // placed on silo A again, loads, and every sequence's cache is recomputed from its tokens.
        var streams = await RunStreamsAsync(() =>
        {
            join.Process.Kill();
            return Task.CompletedTask;
        });
        AssertUndisturbed(streams, "SIGKILL of silo-0, which hosted the stage");
        cluster = await new Cluster.ClusterClient(fixture.Channel).DescribeClusterAsync(new DescribeClusterRequest());
        Assert.Contains(cluster.Grains, g => g.Kind == "stage" && g.Silo == "silo-a" && g.Loaded);
    }

    [Fact]
    public async Task ASiloThatJoinsWhileStreamsRunGetsItsShareAndGivesItBackOnSigterm()
    {
        var clock = Stopwatch.StartNew();
        var join = new Processes.Running(LocalClusterFixture.ScriptStart("join.sh", ["silo-e"], fixture.Model, fixture.Clustering,
            fixture.Ports, fixture.RedisPort));
        await using var _ = join;
        // Four expert groups over silos B, C and E: the plan gives E one, which moves to it while rounds of six
        // streams run, each round equal to the single-process engine.
        TimeSpan? serving = null;
        int rounds = 0, after = 0;
        while (serving is null || after < 2)
        {
            Assert.False(join.Process.HasExited, join.Output);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"silo E got no expert group in 90 s:\n{join.Output}");
            var streams = await RunStreamsAsync();
            AssertUndisturbed(streams, $"round {++rounds} while silo E joins");
            if (serving is not null) after++;
            else if (join.Output.Contains("handed over to silo silo-e") || PlacedFresh.IsMatch(join.Output)) serving = clock.Elapsed;
        }
        output.WriteLine($"from join.sh to an expert group serving on silo E: {serving!.Value.TotalSeconds:F1} s");
        // Handed over by the plan from the silo that held it, or (when an earlier test's kill left that group without an
        // activation) placed on E by the plan when next called: either way E now serves its share.
        Assert.Matches(@"Plan: tiny-moe-1/experts/0/\d moves from silo silo-[bcd] to silo silo-e|Expert group tiny-moe-1/experts/0/\d: loading \[\d+, \d+\) on silo silo-e", join.Output);
        // The operator's view: silo E is a member with the experts role, hosting a loaded group that tokens reach.
        var cluster = await new Cluster.ClusterClient(fixture.Channel).DescribeClusterAsync(new DescribeClusterRequest());
        Assert.Contains(cluster.Silos, s => s.Name == "silo-e" && s.Roles.Contains("experts") && s.Status == "Active");
        var onE = cluster.Grains.Where(g => g.Kind == "expert_group" && g.Silo == "silo-e").ToList();
        Assert.NotEmpty(onE);
        Assert.All(onE, g => Assert.True(g.Loaded && g.RoutedTokens > 0, g.ToString()));
        Assert.All(cluster.Grains, g => Assert.Equal("", g.Error));

        // SIGTERM: E leaves, and the plan over the silos left takes its group back while streams run.
        await LeavesOnSigtermWhileStreamsRunAsync(join, "silo E");
    }

    /// <summary>SIGTERM to a joined silo while six streams run: they finish undisturbed, and it exits cleanly.</summary>
    async Task LeavesOnSigtermWhileStreamsRunAsync(Processes.Running join, string silo)
    {
        var streams = await RunStreamsAsync(async () =>
        {
            using var term = Process.Start("kill", ["-TERM", join.Process.Id.ToString()])!;
            await term.WaitForExitAsync();
        });
        AssertUndisturbed(streams, $"SIGTERM of {silo}");
        using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await join.Process.WaitForExitAsync(exit.Token);
        Assert.Equal(0, join.Process.ExitCode);
        // It waited for the silos left to take its groups (preloaded, then migrated) before it exited. Known: now and then
        // (when run.sh restarts a killed silo while this one leaves) a group is not taken before LeaveTimeoutSeconds and
        // loads again on its next call; the streams are unchanged either way. GracefulLeaveTests proves the hand-over.
        foreach (string line in join.Output.Split('\n').Where(l => l.Contains("Leav") || l.Contains("Left:") || l.Contains("moves from")))
            output.WriteLine($"{silo}: {line.Trim()}");
        Assert.Matches(@"Left: [1-9]\d* grains handed over in|Leaving after [\d.]+s with [1-9]\d* grains handed over", join.Output);
    }

}

/// <summary>
/// Every silo of the cluster killed at once and started again by run.sh, in a cluster of its own: what the other
/// failover tests do must not start from a cluster that has just come back from the dead.
/// </summary>
public sealed class FullRestartTests(FailoverClusterFixture fixture, ITestOutputHelper output) : IClassFixture<FailoverClusterFixture>
{
    [Fact]
    public async Task ASessionOutlivesTheDeathAndRestartOfEverySilo()
    {
        // Session state is durable where the membership store is real; run.sh uses Redis wherever it is installed (CI).
        if (fixture.Clustering != "redis") return;
        var client = new Inference.InferenceClient(fixture.Channel);
        var sessions = new Sessions.SessionsClient(fixture.Channel);
        var session = await sessions.CreateSessionAsync(new CreateSessionRequest { TtlSeconds = 600 });
        string[] turns = ["Hello! What is a mixture of experts?", "How many experts does each token use?", "And which one is busiest?"];
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 10, Logprobs = 1 };
        var history = new List<int>();
        for (int t = 0; t < turns.Length; t++)
        {
            if (t == 2)
            {
                // Whichever silo held the session, it is gone now, with every KV cache; run.sh starts them again.
                int restartsBefore = fixture.Restarts();
                foreach (int offset in new[] { 2, 3, 4 }) Process.GetProcessById(fixture.SiloPid(fixture.Ports + offset)).Kill();
                var clock = Stopwatch.StartNew();
                while (fixture.Restarts() < restartsBefore + 3 && clock.Elapsed < TimeSpan.FromMinutes(2)) await Task.Delay(100);
                await fixture.Script.WaitForHttpAsync($"http://127.0.0.1:{fixture.Ports + 1}/healthz", TimeSpan.FromMinutes(3));
                output.WriteLine($"every silo killed and restarted; serving again after {clock.Elapsed.TotalSeconds:F1} s");
            }
            var turnIds = await LocalClusterTests.TurnPromptAsync(client, history, turns[t]);
            var request = new ChatRequest { SessionId = session.SessionId, Sampling = sampling, EnableThinking = false };
            request.Messages.Add(new Message { Role = "user", Content = turns[t] });
            var ids = new List<int>();
            var logprobs = new List<float>();
            Usage? usage = null;
            await foreach (var response in client.Chat(request).ResponseStream.ReadAllAsync())
            {
                ids.AddRange(response.Tokens.Select(x => x.Id));
                logprobs.AddRange(response.Tokens.Select(x => x.Logprob));
                usage = response.Usage ?? usage;
            }
            var scratch = await GenerateJson.RunAsync(fixture.Model, turnIds, 10);
            Assert.Equal(turnIds.Length, usage!.PromptTokens);
            Assert.Equal(scratch.Ids, ids);
            for (int i = 0; i < ids.Count; i++) Assert.InRange(logprobs[i] - scratch.Logprobs[i], -1e-4, 1e-4);
            // After the restart no cache is left: the turn recomputed the whole history the session kept in Redis.
            if (t == 2) Assert.Equal(0, usage.CachedPromptTokens);
            history.Clear();
            history.AddRange(turnIds);
            history.AddRange(ids);
        }
        var status = await sessions.GetSessionAsync(new GetSessionRequest { SessionId = session.SessionId });
        Assert.Equal(history.Count, status.HistoryTokens);
        await sessions.DeleteSessionAsync(new DeleteSessionRequest { SessionId = session.SessionId });
    }
}
