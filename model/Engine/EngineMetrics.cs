using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// The decode loops' instruments on the <c>Qwen3Cluster</c> meter: KV blocks and sequences as gauges summed over
/// this process's engines, tokens and steps as counters, step time as a histogram.
/// </summary>
public static class EngineMetrics
{
    public const string MeterName = "Qwen3Cluster";
    public static readonly Meter Meter = new(MeterName);
    public static readonly ActivitySource ActivitySource = new(MeterName);

    static readonly List<WeakReference<GenerationEngine>> Engines = [];

    public static readonly Counter<long> PromptTokens = Meter.CreateCounter<long>("qwen3.prompt.tokens", description: "Prompt tokens admitted");
    public static readonly Counter<long> CachedPromptTokens = Meter.CreateCounter<long>("qwen3.prompt.cached_tokens", description: "Prompt tokens served from the KV cache");
    public static readonly Counter<long> GeneratedTokens = Meter.CreateCounter<long>("qwen3.generated.tokens", description: "Tokens sampled");
    public static readonly Counter<long> Requests = Meter.CreateCounter<long>("qwen3.requests", description: "Requests finished, by finish reason");
    public static readonly Histogram<double> StepSeconds = Meter.CreateHistogram<double>("qwen3.step.duration", "s", "Time of one decode step");

    static EngineMetrics()
    {
        Meter.CreateObservableGauge("qwen3.kv.blocks.used", () => Sum(e => e.UsedBlocks), description: "KV blocks referenced by a sequence or a parked cache");
        Meter.CreateObservableGauge("qwen3.kv.blocks.total", () => Sum(e => e.Options.NumBlocks), description: "KV blocks per stage pool");
        Meter.CreateObservableGauge("qwen3.sequences.active", () => Sum(e => e.ActiveSequences), description: "Requests in flight");
        Meter.CreateObservableGauge("qwen3.sequences.waiting", () => Sum(e => e.WaitingSequences), description: "Requests waiting for KV capacity");
        Meter.CreateObservableCounter("qwen3.preemptions", () => Sum(e => e.Preemptions), description: "Sequences whose cache was dropped to make room");
    }

    internal static void Register(GenerationEngine engine)
    {
        lock (Engines) Engines.Add(new WeakReference<GenerationEngine>(engine));
    }

    internal static void Unregister(GenerationEngine engine)
    {
        lock (Engines) Engines.RemoveAll(w => !w.TryGetTarget(out var e) || e == engine);
    }

    static long Sum(Func<GenerationEngine, long> value)
    {
        lock (Engines) return Engines.Sum(w => w.TryGetTarget(out var e) ? value(e) : 0);
    }
}
