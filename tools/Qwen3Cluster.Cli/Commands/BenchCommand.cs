using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Grpc.Core;
using Qwen3Cluster.Protos.V1;
using Spectre.Console;

namespace Qwen3Cluster.Cli.Commands;

/// <summary>
/// <c>qwen3 bench</c>: a gRPC load generator. N workers send M requests in all (each, with --multi-turn K, a session
/// of K turns), and it reports time to first token, inter-token latency, output tokens/s, requests/s and errors.
/// With --warmup W, W requests run first at the same concurrency and are not measured (as llama-bench warms up): a
/// server's first requests pay for JIT compilation, grain activations and lazily loaded weights.
/// </summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var endpoint = new Option<string>("--endpoint") { Description = "gRPC address of a gateway", Required = true };
        var concurrency = new Option<int>("--concurrency") { Description = "Requests in flight at once", Required = true };
        var requests = new Option<int>("--requests") { Description = "Requests in all", Required = true };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length (per turn)", DefaultValueFactory = _ => 128 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens generated per request (end-of-sequence ignored)", DefaultValueFactory = _ => 64 };
        var multiTurn = new Option<int>("--multi-turn") { Description = "Turns per request, each a new message in one session", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON" };
        var apiKey = new Option<string?>("--api-key") { Description = "API key (default: $QWEN3_API_KEY)" };
        var output = new Option<string?>("--output") { Description = "Also write the results as JSON to this file" };
        var seed = new Option<int?>("--seed") { Description = "Seed of the random prompts (default: new prompts every run, so no run hits another's cache)" };
        var warmup = new Option<int>("--warmup") { Description = "Requests run first, at the same concurrency, and not measured (a failed one still counts as an error)", DefaultValueFactory = _ => 0 };
        var command = new Command("bench", "Load-test a gateway over gRPC")
        {
            endpoint, concurrency, requests, promptTokens, maxTokens, multiTurn, json, apiKey, output, seed, warmup,
        };
        command.SetAction(async (parse, ct) =>
        {
            var settings = new Settings(parse.GetValue(endpoint)!, parse.GetValue(concurrency), parse.GetValue(requests),
                parse.GetValue(promptTokens), parse.GetValue(maxTokens), parse.GetValue(multiTurn), parse.GetValue(seed) ?? Random.Shared.Next(),
                parse.GetValue(warmup));
            if (settings.Concurrency < 1 || settings.Requests < 1 || settings.PromptTokens < 1 || settings.MaxTokens < 1 || settings.MultiTurn < 1)
            {
                Console.Error.WriteLine("--concurrency, --requests, --prompt-tokens, --max-tokens and --multi-turn must be at least 1.");
                return 2;
            }
            if (settings.Warmup < 0)
            {
                Console.Error.WriteLine("--warmup must be 0 or more.");
                return 2;
            }
            using var channel = GrpcConnection.Open(settings.Endpoint, parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("QWEN3_API_KEY"));
            var report = await RunAsync(settings, channel, ct);
            string serialized = JsonSerializer.Serialize(report, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true });
            if (parse.GetValue(output) is { } file) await File.WriteAllTextAsync(file, serialized, ct);
            if (parse.GetValue(json)) Console.WriteLine(serialized);
            else Print(report);
            return report.Errors == 0 ? 0 : 1;
        });
        return command;
    }

    public sealed record Settings(string Endpoint, int Concurrency, int Requests, int PromptTokens, int MaxTokens, int MultiTurn, int Seed,
        int Warmup = 0);

    public sealed record Percentiles(double P50, double P90, double P99, double Mean);

    public sealed record Report(Settings Settings, int Completed, int Errors, string? FirstError, double WallSeconds,
        double RequestsPerSecond, double OutputTokensPerSecond, long OutputTokens, long PromptTokens, long CachedPromptTokens,
        Percentiles TtftMs, Percentiles ItlMs);

    static async Task<Report> RunAsync(Settings s, Grpc.Net.Client.GrpcChannel channel, CancellationToken ct)
    {
        var inference = new Inference.InferenceClient(channel);
        var sessions = new Sessions.SessionsClient(channel);
        var models = await inference.ListModelsAsync(new ListModelsRequest(), cancellationToken: ct);
        int vocab = Math.Min(models.Models[0].VocabSize, 150000);
        var ttft = new ConcurrentBag<double>();
        var itl = new ConcurrentBag<double>();
        long outputTokens = 0, promptTokens = 0, cached = 0;
        int completed = 0, errors = 0, next = 0, last = s.Requests;
        string? firstError = null;

        async Task TurnAsync(AsyncServerStreamingCall<GenerateResponse> call)
        {
            var start = Stopwatch.GetTimestamp();
            long last = 0;
            Usage? usage = null;
            await foreach (var r in call.ResponseStream.ReadAllAsync(ct))
            {
                long now = Stopwatch.GetTimestamp();
                int tokens = r.Tokens.Count;
                if (tokens > 0)
                {
                    if (last == 0) ttft.Add(Stopwatch.GetElapsedTime(start, now).TotalMilliseconds);
                    else for (int i = 0; i < tokens; i++) itl.Add(Stopwatch.GetElapsedTime(last, now).TotalMilliseconds / tokens);
                    last = now;
                    Interlocked.Add(ref outputTokens, tokens);
                }
                usage = r.Usage ?? usage;
            }
            if (usage is not null)
            {
                Interlocked.Add(ref promptTokens, usage.PromptTokens);
                Interlocked.Add(ref cached, usage.CachedPromptTokens);
            }
        }

        async Task OneRequestAsync(int index)
        {
            var random = new Random(HashCode.Combine(s.Seed, index));
            var sampling = new SamplingParams { Temperature = 0, MaxTokens = s.MaxTokens, IgnoreEos = true };
            if (s.MultiTurn == 1)
            {
                var request = new GenerateRequest { TokenIds = new TokenIds(), Sampling = sampling };
                request.TokenIds.Ids.AddRange(Enumerable.Range(0, s.PromptTokens).Select(_ => random.Next(1000, vocab)));
                using var call = inference.Generate(request, cancellationToken: ct);
                await TurnAsync(call);
                return;
            }
            var session = await sessions.CreateSessionAsync(new CreateSessionRequest(), cancellationToken: ct);
            try
            {
                for (int turn = 0; turn < s.MultiTurn; turn++)
                {
                    var request = new ChatRequest { SessionId = session.SessionId, Sampling = sampling, EnableThinking = false };
                    request.Messages.Add(new Message { Role = "user", Content = Words(random, s.PromptTokens) });
                    using var call = inference.Chat(request, cancellationToken: ct);
                    await TurnAsync(call);
                }
            }
            finally
            {
                await sessions.DeleteSessionAsync(new DeleteSessionRequest { SessionId = session.SessionId });
            }
        }

        async Task WorkerAsync(ProgressTask? progress)
        {
            while (Interlocked.Increment(ref next) is int index && index <= last)
            {
                try
                {
                    await OneRequestAsync(index);
                    Interlocked.Increment(ref completed);
                }
                catch (Exception e) when (e is RpcException or IOException or HttpRequestException)
                {
                    Interlocked.Increment(ref errors);
                    Interlocked.CompareExchange(ref firstError, e.Message, null);
                }
                progress?.Increment(1);
            }
        }

        if (s.Warmup > 0)
        {
            // Their own prompts (indices after the measured ones'), so the measured requests hit no cache they left.
            next = s.Requests;
            last = s.Requests + s.Warmup;
            await Task.WhenAll(Enumerable.Range(0, s.Concurrency).Select(_ => WorkerAsync(null)));
            ttft.Clear();
            itl.Clear();
            outputTokens = promptTokens = cached = 0;
            completed = 0;
            next = 0;
            last = s.Requests;
        }
        var clock = Stopwatch.StartNew();
        if (!Console.IsErrorRedirected)
        {
            var err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            await err.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .StartAsync(async ctx =>
                {
                    var task = ctx.AddTask($"{s.Requests} requests x{s.Concurrency}", maxValue: s.Requests);
                    await Task.WhenAll(Enumerable.Range(0, s.Concurrency).Select(_ => WorkerAsync(task)));
                });
        }
        else
        {
            await Task.WhenAll(Enumerable.Range(0, s.Concurrency).Select(_ => WorkerAsync(null)));
        }

        double wall = clock.Elapsed.TotalSeconds;
        return new Report(s, completed, errors, firstError, Math.Round(wall, 3), Math.Round(completed / wall, 3),
            Math.Round(outputTokens / wall, 2), outputTokens, promptTokens, cached, Summarize(ttft), Summarize(itl));
    }

    static readonly string[] Vocabulary =
        ["the", "cluster", "serves", "experts", "token", "silo", "grain", "stage", "model", "cache", "stream", "batch",
         "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "river", "mountain", "signal", "network", "garden"];

    /// <summary>About <paramref name="tokens"/> tokens of English-like words (one common word is about one token).</summary>
    static string Words(Random random, int tokens) =>
        string.Join(' ', Enumerable.Range(0, tokens).Select(_ => Vocabulary[random.Next(Vocabulary.Length)]));

    static Percentiles Summarize(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return new Percentiles(0, 0, 0, 0);
        double At(double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
        return new Percentiles(Math.Round(At(0.5), 2), Math.Round(At(0.9), 2), Math.Round(At(0.99), 2), Math.Round(sorted.Average(), 2));
    }

    static void Print(Report r)
    {
        var table = new Table().Title($"qwen3 bench: {r.Settings.Endpoint}, concurrency {r.Settings.Concurrency}, " +
            $"{r.Settings.Requests} requests, {r.Settings.PromptTokens} prompt / {r.Settings.MaxTokens} output tokens, {r.Settings.MultiTurn} turn(s)");
        table.AddColumns("metric", "p50", "p90", "p99", "mean");
        table.AddRow("TTFT (ms)", $"{r.TtftMs.P50}", $"{r.TtftMs.P90}", $"{r.TtftMs.P99}", $"{r.TtftMs.Mean}");
        table.AddRow("inter-token latency (ms)", $"{r.ItlMs.P50}", $"{r.ItlMs.P90}", $"{r.ItlMs.P99}", $"{r.ItlMs.Mean}");
        AnsiConsole.Write(table);
        var totals = new Table().HideHeaders();
        totals.AddColumns("", "");
        totals.AddRow("output tokens/s", $"{r.OutputTokensPerSecond}");
        totals.AddRow("requests/s", $"{r.RequestsPerSecond}");
        totals.AddRow("completed", $"{r.Completed}");
        totals.AddRow("errors", r.FirstError is null ? $"{r.Errors}" : $"{r.Errors} (first: {Markup.Escape(r.FirstError)})");
        totals.AddRow("prompt tokens (cached)", $"{r.PromptTokens} ({r.CachedPromptTokens})");
        totals.AddRow("wall time (s)", $"{r.WallSeconds}");
        AnsiConsole.Write(totals);
    }
}
