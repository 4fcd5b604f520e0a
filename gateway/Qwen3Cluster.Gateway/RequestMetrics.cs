using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The latencies a client sees, measured where the client is served: from a request's arrival at the gateway
/// (before tokenization) to its first token being written to the client (<c>qwen3_time_to_first_token_seconds</c>), between tokens
/// (<c>qwen3_inter_token_latency_seconds</c>; an update that carries several tokens shares its gap between them)
/// and to its last (<c>qwen3_e2e_request_latency_seconds</c>), for gRPC and OpenAI requests alike; and the requests
/// refused or failed, by <c>kind</c> (<c>qwen3_request_errors_total</c>: InvalidArgument ... Unavailable, Internal).
/// </summary>
public static class RequestMetrics
{
    public static readonly Histogram<double> TimeToFirstToken = Seconds("qwen3.time_to_first_token",
        "From a request's arrival at the gateway to its first token");
    public static readonly Histogram<double> InterTokenLatency = Seconds("qwen3.inter_token_latency",
        "Between consecutive tokens of one request, as the gateway forwards them");
    public static readonly Histogram<double> EndToEndLatency = Seconds("qwen3.e2e_request_latency",
        "From a request's arrival at the gateway to its last token");

    static readonly Counter<long> Errors = EngineMetrics.Meter.CreateCounter<long>("qwen3.request_errors",
        description: "Requests answered with an error, by kind (client errors such as InvalidArgument, server ones such as Unavailable)");

    /// <summary>A request (gRPC or OpenAI) was answered with this error.</summary>
    public static void Failed(ErrorKind kind) => Errors.Add(1, new KeyValuePair<string, object?>("kind", kind.ToString()));

    static Histogram<double> Seconds(string name, string description) => EngineMetrics.Seconds(name, description);

    /// <summary>
    /// The request's span (<c>qwen3.request</c>), under the ASP.NET Core one: the grain call to the replica, and through
    /// it the steps that serve it (by their links), come under it. <see cref="Timed"/> adds what it came to.
    /// </summary>
    public static Activity? StartRequest(string model, string? sessionId)
    {
        var activity = EngineMetrics.ActivitySource.StartActivity("qwen3.request", ActivityKind.Internal);
        activity?.SetTag("qwen3.model", model);
        if (sessionId is { Length: > 0 }) activity?.SetTag("qwen3.session_id", sessionId);
        return activity;
    }

    /// <summary>
    /// Passes <paramref name="updates"/> on, timing them from <paramref name="arrivedAt"/> (a Stopwatch timestamp), and
    /// tags <paramref name="activity"/> with the request's tokens and finish reason.
    /// </summary>
    public static async IAsyncEnumerable<GenerationUpdate> Timed(this IAsyncEnumerable<GenerationUpdate> updates, long arrivedAt,
        Activity? activity = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        long last = 0;
        bool finished = false;
        await foreach (var update in updates.WithCancellation(cancellationToken))
        {
            if (update.IsFinal && update.Error is null) finished = true;
            if (activity is not null) Tag(activity, update);
            yield return update;
            // Timed once the caller has written the update to its client (it asks for the next one after that).
            long now = Stopwatch.GetTimestamp();
            int count = update.Tokens.Count;
            if (count == 0) continue;
            if (last == 0)
            {
                // The first token; any that came with it came at the same moment.
                TimeToFirstToken.Record(Stopwatch.GetElapsedTime(arrivedAt, now).TotalSeconds);
                for (int i = 1; i < count; i++) InterTokenLatency.Record(0);
            }
            else
            {
                double gap = Stopwatch.GetElapsedTime(last, now).TotalSeconds / count;
                for (int i = 0; i < count; i++) InterTokenLatency.Record(gap);
            }
            last = now;
        }
        if (finished) EndToEndLatency.Record(Stopwatch.GetElapsedTime(arrivedAt).TotalSeconds);
    }

    static void Tag(Activity activity, GenerationUpdate update)
    {
        if (update.Error is { } error) activity.SetStatus(ActivityStatusCode.Error, $"{error.Kind}: {error.Message}");
        if (update.FinishReason is { } finish) activity.SetTag("qwen3.finish_reason", finish);
        if (update.Usage is { } usage)
        {
            activity.SetTag("qwen3.prompt_tokens", usage.PromptTokens);
            activity.SetTag("qwen3.cached_tokens", usage.CachedPromptTokens);
            activity.SetTag("qwen3.generated_tokens", usage.CompletionTokens);
        }
    }
}
