using Grpc.Core;
using Grpc.Net.Client;
using Npgsql;
using Qwen3Cluster.Protos.V1;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>
/// The three-process cluster with PostgreSQL as its membership store (Orleans' ADO.NET provider) on a server of the
/// test's own that starts empty: the silos create Orleans' tables, register in them, keep sessions in them, serve,
/// and stop on Ctrl-C.
/// </summary>
public sealed class PostgresClusterTests
{
    [Fact]
    public async Task TheClusterRunsOnPostgresMembershipAndKeepsSessionsThere()
    {
        await using var postgres = await PostgresServer.StartAsync();
        string model = await TestModels.GetAsync("tiny-moe");
        var (script, ports) = await LocalClusterFixture.StartScriptAsync(model, "postgres", postgres: postgres.ConnectionString);
        await using var _ = script;
        Assert.Contains("waiting for the cluster (postgres membership", script.Output);
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{ports}");

        // Three silos, active in Orleans' membership table under the cluster id run.sh chose.
        await using var db = new NpgsqlConnection(postgres.ConnectionString);
        await db.OpenAsync();
        // (run.sh reports serving once the gateway is ready, which can be a moment before the last silo is active.)
        long active = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (active != 3 && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            await using var members = new NpgsqlCommand("SELECT count(*) FROM orleansmembershiptable WHERE deploymentid = @id AND status = 3", db);
            members.Parameters.AddWithValue("id", $"local-{ports + 2}");
            active = (long)(await members.ExecuteScalarAsync())!;
            if (active != 3) await Task.Delay(250);
        }
        Assert.Equal(3L, active);

        // It serves what qwen3 generate gives.
        int[] prompt = [17, 512, 3001, 99, 4000, 7];
        var expected = await GenerateJson.RunAsync(model, prompt, 10);
        var request = new GenerateRequest { TokenIds = new TokenIds(), Sampling = new SamplingParams { Temperature = 0, MaxTokens = 10, Logprobs = 1 } };
        request.TokenIds.Ids.AddRange(prompt);
        var ids = new List<int>();
        var logprobs = new List<float>();
        await foreach (var response in new Inference.InferenceClient(channel).Generate(request).ResponseStream.ReadAllAsync())
        {
            ids.AddRange(response.Tokens.Select(t => t.Id));
            logprobs.AddRange(response.Tokens.Select(t => t.Logprob));
        }
        Assert.Equal(expected.Ids, ids);
        for (int i = 0; i < ids.Count; i++) Assert.InRange(logprobs[i] - expected.Logprobs[i], -1e-4, 1e-4);

        // A session's state is a row of Orleans' storage table.
        var sessions = new Sessions.SessionsClient(channel);
        var session = await sessions.CreateSessionAsync(new CreateSessionRequest { TtlSeconds = 600 });
        var chat = new ChatRequest { SessionId = session.SessionId, Sampling = new SamplingParams { Temperature = 0, MaxTokens = 4 }, EnableThinking = false };
        chat.Messages.Add(new Message { Role = "user", Content = "Hello there" });
        await foreach (var _r in new Inference.InferenceClient(channel).Chat(chat).ResponseStream.ReadAllAsync()) { }
        await using (var rows = new NpgsqlCommand("SELECT count(*) FROM orleansstorage", db))
            Assert.True((long)(await rows.ExecuteScalarAsync())! >= 1);

        Assert.Equal(0, await script.InterruptAsync(TimeSpan.FromSeconds(90)));
        Assert.Contains("stopped", script.Output);
    }
}
