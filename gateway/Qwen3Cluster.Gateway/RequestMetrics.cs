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

    /// <summary>Passes <paramref name="updates"/> on, timing them from <paramref name="arrivedAt"/> (a Stopwatch timestamp).</summary>
    public static async IAsyncEnumerable<GenerationUpdate> Timed(this IAsyncEnumerable<GenerationUpdate> updates, long arrivedAt,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        long last = 0;
        bool finished = false;
        await foreach (var update in updates.WithCancellation(cancellationToken))
        {
            if (update.IsFinal && update.Error is null) finished = true;
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
}
