using System.Diagnostics;
using Grpc.Core;
using Grpc.Net.Client;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>silos/local/run.sh started as real processes: three silos on loopback with Redis membership (or localhost).</summary>
public sealed class LocalClusterFixture : IAsyncLifetime
{
    public Processes.Running Script { get; private set; } = null!;
    public GrpcChannel Channel { get; private set; } = null!;
    public string Model { get; private set; } = "";
    public int HttpPort { get; private set; }
    /// <summary>The membership store asked of run.sh: Redis wherever redis-server is installed, and always on CI.</summary>
    public string Clustering { get; } = RedisInstalled || Environment.GetEnvironmentVariable("CI") == "true" ? "redis" : "localhost";
    public int RedisPort { get; } = Processes.FreePort();

    static bool RedisInstalled =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(dir => File.Exists(Path.Combine(dir, "redis-server")));

    public async Task InitializeAsync()
    {
        Model = await TestModels.GetAsync("tiny-moe");
        int ports;
        (Script, ports) = await StartScriptAsync(Model, Clustering, RedisPort);
        HttpPort = ports + 1;
        Channel = GrpcChannel.ForAddress($"http://127.0.0.1:{ports}");
    }

    /// <summary>Starts silos/local/run.sh on free ports and waits until it serves; returns it and its gRPC port (HTTP is one above).</summary>
    public static async Task<(Processes.Running Script, int GrpcPort)> StartScriptAsync(string model, string clustering, int? redisPort = null,
        string? postgres = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        int ports = Processes.FreePorts(20);
        var start = ScriptStart("run.sh", [], model, clustering, ports, redisPort ?? Processes.FreePort());
        if (postgres is not null) start.Environment["POSTGRES_CONNECTION"] = postgres;
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        var script = new Processes.Running(start);
        await script.WaitForHttpAsync($"http://127.0.0.1:{ports + 1}/healthz", TimeSpan.FromMinutes(4));
        return (script, ports);
    }

    /// <summary>
    /// One of silos/local's scripts with the environment run.sh was given: gRPC at <paramref name="ports"/>, HTTP one
    /// above, silo ports from two above, gateway ports from five above, metrics ports from eight above, health ports from fourteen above.
    /// </summary>
    public static ProcessStartInfo ScriptStart(string name, string[] args, string model, string clustering, int ports, int redisPort)
    {
        var start = new ProcessStartInfo("bash", [Path.Combine(Processes.RepositoryRoot, "silos", "local", name), .. args]);
        start.Environment["MODEL_DIR"] = model;
        start.Environment["QWEN3"] = $"dotnet {Processes.Qwen3Dll}";
        start.Environment["GRPC_PORT"] = ports.ToString();
        start.Environment["HTTP_PORT"] = (ports + 1).ToString();
        start.Environment["SILO_PORT"] = (ports + 2).ToString();
        start.Environment["GATEWAY_PORT"] = (ports + 5).ToString();
        start.Environment["REDIS_PORT"] = redisPort.ToString();
        start.Environment["METRICS_PORT"] = (ports + 8).ToString();
        start.Environment["HEALTH_PORT"] = (ports + 14).ToString();
        start.Environment["CLUSTERING"] = clustering;
        return start;
    }

    public async Task DisposeAsync()
    {
        Channel.Dispose();
        await Script.DisposeAsync();
    }

    /// <summary>
    /// Waits until every expert group runs, loaded, on an experts silo (silo B or C). run.sh reports the cluster serving
    /// once the gateway has placed and loaded everything, which may be before silos B and C are active members: the
    /// groups then start on silo A and move to B and C a few seconds later, as to any silo that joins.
    /// </summary>
    public static async Task WaitForExpertSilosAsync(GrpcChannel channel)
    {
        var client = new Cluster.ClusterClient(channel);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var cluster = await client.DescribeClusterAsync(new DescribeClusterRequest());
            var groups = cluster.Grains.Where(g => g.Kind == "expert_group" && g.Copy == 0).ToList();
            if (groups.Count > 0 && groups.All(g => g.Loaded && g.Silo is "silo-b" or "silo-c")) return;
            if (clock.Elapsed > TimeSpan.FromSeconds(90))
                throw new TimeoutException($"expert groups still on {string.Join(", ", groups.Select(g => $"{g.Key}@{g.Silo}"))}");
            await Task.Delay(250);
        }
    }
}

public sealed class LocalClusterTests(LocalClusterFixture fixture) : IClassFixture<LocalClusterFixture>
{
    Inference.InferenceClient Client => new(fixture.Channel);

    static async Task<(int[] Ids, float[] Logprobs, Usage Usage, string Finish)> ReadAsync<T>(AsyncServerStreamingCall<T> call,
        Func<T, (IEnumerable<Token> Tokens, Usage? Usage, string Finish)> parts)
    {
        var ids = new List<int>();
        var logprobs = new List<float>();
        Usage? usage = null;
        string finish = "";
        await foreach (var response in call.ResponseStream.ReadAllAsync())
        {
            var (tokens, u, f) = parts(response);
            foreach (var t in tokens)
            {
                ids.Add(t.Id);
                logprobs.Add(t.Logprob);
            }
            usage = u ?? usage;
            if (f.Length > 0) finish = f;
        }
        return (ids.ToArray(), logprobs.ToArray(), usage!, finish);
    }

    Task<(int[] Ids, float[] Logprobs, Usage Usage, string Finish)> GenerateAsync(int[] prompt, int maxTokens)
    {
        var request = new GenerateRequest
        {
            TokenIds = new TokenIds(),
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens, Logprobs = 3, IgnoreEos = true },
        };
        request.TokenIds.Ids.AddRange(prompt);
        return ReadAsync(Client.Generate(request), r => (r.Tokens, r.Usage, r.FinishReason));
    }

    static int[] Prompt(int i) => Enumerable.Range(0, 5 + 3 * i).Select(j => 1000 + (j * 7919 + i * 104729) % 100000).ToArray();

    [Fact]
    public async Task StreamsOverGrpcWhatQwen3GenerateGives()
    {
        var expected = await GenerateJson.RunAsync(fixture.Model, Prompt(0), 12);
        var actual = await GenerateAsync(Prompt(0), 12);
        Assert.Equal(expected.Ids, actual.Ids);
        for (int i = 0; i < expected.Ids.Length; i++) Assert.InRange(actual.Logprobs[i] - expected.Logprobs[i], -1e-4, 1e-4);
        Assert.Equal("length", actual.Finish);
        Assert.Equal(Prompt(0).Length, actual.Usage.PromptTokens);
        Assert.Equal(12, actual.Usage.CompletionTokens);
    }

    [Fact]
    public async Task EightConcurrentStreamsEachGetTheirOwnOutput()
    {
        var expected = new List<GenerateJson>();
        for (int i = 0; i < 8; i++) expected.Add(await GenerateJson.RunAsync(fixture.Model, Prompt(i), 8));
        var actual = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => GenerateAsync(Prompt(i), 8)));
        for (int i = 0; i < 8; i++) Assert.Equal(expected[i].Ids, actual[i].Ids);
    }

    [Fact]
    public async Task MultiTurnChatReusesTheSessionCacheAndEqualsAFromScratchRun()
    {
        var sessions = new Sessions.SessionsClient(fixture.Channel);
        var session = await sessions.CreateSessionAsync(new CreateSessionRequest { TtlSeconds = 600 });
        var tokenize = new List<int>();
        var history = new List<int>();
        string[] turns = ["Hello! What is a mixture of experts?", "And how many experts does each token use?"];
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 10, Logprobs = 1 };
        for (int t = 0; t < turns.Length; t++)
        {
            var request = new ChatRequest { SessionId = session.SessionId, Sampling = sampling, EnableThinking = false };
            request.Messages.Add(new Message { Role = "user", Content = turns[t] });
            var reply = await ReadAsync(Client.Chat(request), r => (r.Tokens, r.Usage, r.FinishReason));

            // From scratch: the whole conversation's token ids through qwen3 generate in one process.
            var status = await sessions.GetSessionAsync(new GetSessionRequest { SessionId = session.SessionId });
            int promptTokens = reply.Usage.PromptTokens;
            Assert.Equal(promptTokens + reply.Ids.Length, status.HistoryTokens);
            Assert.Equal(t == 0 ? 0 : history.Count, reply.Usage.CachedPromptTokens);

            var turnIds = await TurnPromptAsync(history, turns[t]);
            var scratch = await GenerateJson.RunAsync(fixture.Model, turnIds, 10);
            Assert.Equal(promptTokens, turnIds.Length);
            Assert.Equal(scratch.Ids, reply.Ids);
            for (int i = 0; i < scratch.Ids.Length; i++) Assert.InRange(reply.Logprobs[i] - scratch.Logprobs[i], -1e-4, 1e-4);
            history.Clear();
            history.AddRange(turnIds);
            history.AddRange(reply.Ids);
        }
        await sessions.DeleteSessionAsync(new DeleteSessionRequest { SessionId = session.SessionId });
        var gone = await Assert.ThrowsAsync<RpcException>(() => sessions.GetSessionAsync(new GetSessionRequest { SessionId = session.SessionId }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
    }

    /// <summary>The turn's prompt ids: the history, then the new user message as the chat template continues it.</summary>
    Task<int[]> TurnPromptAsync(List<int> history, string user) => TurnPromptAsync(Client, history, user);

    public static async Task<int[]> TurnPromptAsync(Inference.InferenceClient client, List<int> history, string user)
    {
        var request = new TokenizeRequest { EnableThinking = false };
        request.Messages.Add(new Message { Role = "user", Content = user });
        var rendered = (await client.TokenizeAsync(request)).Ids.ToArray();
        if (history.Count == 0) return rendered;
        var newline = (await client.TokenizeAsync(new TokenizeRequest { Text = "\n" })).Ids.ToArray();
        const int imEnd = 151645;
        int[] close = history[^1] == imEnd ? newline : [imEnd, .. newline];
        return [.. history, .. close, .. rendered];
    }

    [Fact]
    public async Task EverySiloServesMetricsAndTheExpertSilosExportTheirRoutedTokens()
    {
        int ports = fixture.HttpPort - 1;
        await LocalClusterFixture.WaitForExpertSilosAsync(fixture.Channel);
        string[] targets = [$"127.0.0.1:{fixture.HttpPort}", $"127.0.0.1:{ports + 9}", $"127.0.0.1:{ports + 10}"];
        await using var prometheus = await PrometheusServer.StartAsync(targets);
        // Each expert silo reports the tokens its groups ran: four groups over silos B and C, with stage and group labels.
        // Counted over the last 20 s: right after start-up silo A may run groups until B and C have joined (other tests'
        // requests in this cluster, or this one's while the plan settles), and its counters keep what it ran.
        const string query = "sum by (instance, stage, group) (increase(qwen3_expert_routed_tokens_total[20s])) > 0";
        var clock = Stopwatch.StartNew();
        List<(Dictionary<string, string> Labels, double Value)> routed;
        while (true)
        {
            await GenerateAsync(Prompt(3), 8);
            routed = await prometheus.QueryAsync(query);
            if (routed.Select(r => r.Labels["instance"]).Distinct().Order().SequenceEqual(targets[1..].Order())
                && routed.Select(r => r.Labels["group"]).Distinct().Count() == 4)
            {
                break;
            }
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90),
                $"tokens routed in the last 20 s by {string.Join(", ", routed.Select(r => $"{r.Labels["instance"]} (group {r.Labels["group"]})"))} only");
            await Task.Delay(500);
        }
        Assert.Equal(targets[1..], routed.Select(r => r.Labels["instance"]).Distinct().Order());
        Assert.All(routed, r => Assert.True(r.Value > 0));
        Assert.Equal(["0", "1", "2", "3"], routed.Select(r => r.Labels["group"]).Distinct().Order());
        Assert.All(routed, r => Assert.Equal("0", r.Labels["stage"]));
        // Every silo is up for Prometheus, and the gateway's replica exports its engine.
        var up = await prometheus.WaitForAsync("up", r => r.Count == 3 && r.All(s => s.Value == 1));
        Assert.NotEmpty(await prometheus.QueryAsync($"qwen3_time_to_first_token_seconds_count{{instance=\"{targets[0]}\"}}"));
        // The expert silos answer Kubernetes' gRPC health probes on their health ports, as the gateway does on its gRPC port.
        foreach (int port in new[] { ports, ports + 15, ports + 16 })
        {
            using var health = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
            var answer = await new Grpc.Health.V1.Health.HealthClient(health).CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, answer.Status);
        }
    }

    [Fact]
    public async Task TheSilosKeepTheirMembershipInTheStoreAskedFor()
    {
        Assert.Contains($"waiting for the cluster ({fixture.Clustering} membership", fixture.Script.Output);
        if (fixture.Clustering != "redis") return;
        // Orleans' Redis membership table: one hash per cluster, whose key names the cluster id run.sh chose.
        var scan = new ProcessStartInfo("redis-cli", ["-p", fixture.RedisPort.ToString(), "--scan", "--pattern", $"*local-{fixture.RedisPort}*"])
        {
            RedirectStandardOutput = true,
        };
        using var cli = Process.Start(scan)!;
        string keys = await cli.StandardOutput.ReadToEndAsync();
        await cli.WaitForExitAsync();
        Assert.Equal(0, cli.ExitCode);
        Assert.NotEmpty(keys.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task TheScriptStopsEveryProcessOnCtrlC()
    {
        // A second cluster of its own (on localhost clustering this time), since test order is not guaranteed.
        var (script, ports) = await LocalClusterFixture.StartScriptAsync(fixture.Model, clustering: "localhost");
        await using var _ = script;
        Assert.Equal(0, await script.InterruptAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("stopped", script.Output);
        var leftovers = Process.GetProcesses().Where(p =>
        {
            try { return File.ReadAllText($"/proc/{p.Id}/environ").Contains($"Qwen3__Gateway__GrpcPort={ports}\0"); }
            catch { return false; }
        });
        Assert.Empty(leftovers);
    }

    [Fact]
    public async Task ASiloStoppedWhileStillJoiningExitsCleanly()
    {
        // An experts silo whose primary never answers stays in its start (joining) until stopped; Ctrl-C then is a
        // stop like any other (exit 0), not an unhandled cancelled start (which aborted the process).
        int ports = Processes.FreePorts(5);
        var start = new ProcessStartInfo("dotnet",
            [Processes.Qwen3Dll, "serve", "--config", Path.Combine(Processes.RepositoryRoot, "silos", "local", "silo-b.json"), "--model", fixture.Model]);
        start.Environment["Qwen3__Clustering__SiloPort"] = ports.ToString();
        start.Environment["Qwen3__Clustering__GatewayPort"] = (ports + 1).ToString();
        start.Environment["Qwen3__Clustering__PrimarySiloPort"] = (ports + 2).ToString(); // nothing listens there
        start.Environment["Qwen3__Telemetry__MetricsPort"] = (ports + 3).ToString();
        start.Environment["Qwen3__Telemetry__HealthPort"] = (ports + 4).ToString();
        await using var silo = new Processes.Running(start);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (!silo.Output.Contains($"Unable to connect to 127.0.0.1:{ports + 2}") && !silo.Process.HasExited && DateTime.UtcNow < deadline)
            await Task.Delay(200);
        Assert.False(silo.Process.HasExited, silo.Output);
        Assert.Contains($"Unable to connect to 127.0.0.1:{ports + 2}", silo.Output);
        Assert.Equal(0, await silo.InterruptAsync(TimeSpan.FromSeconds(60)));
        Assert.DoesNotContain("Unhandled exception", silo.Output);
        Assert.Contains("stopped before the silo had started", silo.Output);
    }
}
