using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The latencies a client sees, measured where the client is served: from a request's arrival at the gateway
/// (before tokenization) to its first token (<c>qwen3_time_to_first_token_seconds</c>), between tokens
/// (<c>qwen3_inter_token_latency_seconds</c>; an update that carries several tokens shares its gap between them)
/// and to its last (<c>qwen3_e2e_request_latency_seconds</c>), for gRPC and OpenAI requests alike.
/// </summary>
public static class RequestMetrics
{
    public static readonly Histogram<double> TimeToFirstToken = Seconds("qwen3.time_to_first_token",
        "From a request's arrival at the gateway to its first token");
    public static readonly Histogram<double> InterTokenLatency = Seconds("qwen3.inter_token_latency",
        "Between consecutive tokens of one request, as the gateway forwards them");
    public static readonly Histogram<double> EndToEndLatency = Seconds("qwen3.e2e_request_latency",
        "From a request's arrival at the gateway to its last token");

    static Histogram<double> Seconds(string name, string description) => EngineMetrics.Seconds(name, description);

    /// <summary>Passes <paramref name="updates"/> on, timing them from <paramref name="arrivedAt"/> (a Stopwatch timestamp).</summary>
    public static async IAsyncEnumerable<GenerationUpdate> Timed(this IAsyncEnumerable<GenerationUpdate> updates, long arrivedAt,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        long last = 0;
        bool finished = false;
        await foreach (var update in updates.WithCancellation(cancellationToken))
        {
            long now = Stopwatch.GetTimestamp();
            int count = update.Tokens.Count;
            if (count > 0)
            {
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
            if (update.IsFinal && update.Error is null) finished = true;
            yield return update;
        }
        if (finished) EndToEndLatency.Record(Stopwatch.GetElapsedTime(arrivedAt).TotalSeconds);
    }
}
