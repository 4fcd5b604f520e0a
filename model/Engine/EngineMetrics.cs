using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// The decode loops' instruments on the <c>Qwen3Cluster</c> meter, as a Prometheus scrape names them: per request
/// its time in the queue (<c>qwen3_request_queue_time_seconds</c>) and its token counts, per step its time
/// (<c>qwen3_step_duration_seconds</c>), prefix-cache queries and hits in tokens, and per replica (label
/// <c>replica</c>) its KV blocks and sequences as gauges. The latencies a client sees (first token, between tokens,
/// end to end) are measured at the gateway, with the same buckets. Latency buckets run from 1 ms to 60 s,
/// token-count buckets in powers of two.
/// </summary>
public static class EngineMetrics
{
    public const string MeterName = "Qwen3Cluster";
    public static readonly Meter Meter = new(MeterName);
    public static readonly ActivitySource ActivitySource = new(MeterName);

    /// <summary>Latency bucket bounds in seconds: 1 ms to 60 s, finer where decode steps and first tokens fall.</summary>
    public static readonly IReadOnlyList<double> SecondsBuckets =
        [0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
         1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60];

    /// <summary>Token-count bucket bounds: powers of two, 1 to 128 Ki.</summary>
    public static readonly IReadOnlyList<long> TokenBuckets = [.. Enumerable.Range(0, 18).Select(i => 1L << i)];

    static readonly List<WeakReference<GenerationEngine>> Engines = [];

    public static readonly Counter<long> PromptTokens = Meter.CreateCounter<long>("qwen3.prompt.tokens", description: "Prompt tokens admitted");
    public static readonly Counter<long> CachedPromptTokens = Meter.CreateCounter<long>("qwen3.prompt.cached_tokens", description: "Prompt tokens served from the KV cache");
    public static readonly Counter<long> GeneratedTokens = Meter.CreateCounter<long>("qwen3.generated.tokens", description: "Tokens sampled");
    public static readonly Counter<long> Requests = Meter.CreateCounter<long>("qwen3.requests", description: "Requests finished, by finish reason");

    public static readonly Counter<long> PrefixCacheQueries = Meter.CreateCounter<long>("qwen3.prefix_cache.queries",
        description: "Prompt tokens looked up in the prefix cache, once per request at its first admission");
    public static readonly Counter<long> PrefixCacheHits = Meter.CreateCounter<long>("qwen3.prefix_cache.hits",
        description: "Prompt tokens the prefix cache (or a session's parked cache) held, so they were not computed");

    public static readonly Histogram<double> StepSeconds = Seconds("qwen3.step_duration", "Time of one engine step (prefill and decode of every scheduled sequence)");
    public static readonly Histogram<double> QueueTime = Seconds("qwen3.request_queue_time", "From a request's arrival at its replica to its first admission into a step");
    public static readonly Histogram<long> RequestPromptTokens = Tokens("qwen3.request_prompt_tokens", "Prompt tokens of each finished request");
    public static readonly Histogram<long> RequestGenerationTokens = Tokens("qwen3.request_generation_tokens", "Generated tokens of each finished request");

    /// <summary>Time to mask one constrained row of a step's logits: microseconds, in buckets from 1 µs to 50 ms.</summary>
    public static readonly Histogram<double> ConstraintMaskSeconds = Meter.CreateHistogram("qwen3.constraint.mask_duration", "s",
        "Time to apply one sequence's output constraint to its row of a step's logits (the first time in a state includes building its mask)",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2] });

    public static Histogram<double> Seconds(string name, string description) => Meter.CreateHistogram(name, "s", description,
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });

    static Histogram<long> Tokens(string name, string description) => Meter.CreateHistogram(name, unit: null, description,
        advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = TokenBuckets });

    static EngineMetrics()
    {
        Meter.CreateObservableGauge("qwen3.kv.blocks.used", () => PerReplica(e => e.UsedBlocks), description: "KV blocks referenced by a sequence or a parked cache");
        Meter.CreateObservableGauge("qwen3.kv.blocks.total", () => PerReplica(e => e.Options.NumBlocks), description: "KV blocks per stage pool");
        Meter.CreateObservableGauge("qwen3.sequences.running", () => PerReplica(e => e.RunningSequences), description: "Sequences being prefilled or decoded");
        Meter.CreateObservableGauge("qwen3.sequences.waiting", () => PerReplica(e => e.WaitingSequences), description: "Requests waiting for KV capacity or a batch slot");
        Meter.CreateObservableGauge("qwen3.sequences.active", () => PerReplica(e => e.ActiveSequences), description: "Requests in flight (running and waiting)");
        Meter.CreateObservableCounter("qwen3.preemptions", () => PerReplica(e => e.Preemptions), description: "Sequences whose cache was dropped to make room");
    }

    internal static void Register(GenerationEngine engine)
    {
        lock (Engines) Engines.Add(new WeakReference<GenerationEngine>(engine));
    }

    internal static void Unregister(GenerationEngine engine)
    {
        lock (Engines) Engines.RemoveAll(w => !w.TryGetTarget(out var e) || e == engine);
    }

    static List<Measurement<long>> PerReplica(Func<GenerationEngine, long> value)
    {
        lock (Engines)
        {
            return Engines.Select(w => w.TryGetTarget(out var e) ? e : null).OfType<GenerationEngine>()
                .GroupBy(e => e.Name)
                .Select(g => new Measurement<long>(g.Sum(value), new KeyValuePair<string, object?>("replica", g.Key)))
                .ToList();
        }
    }

    /// <summary>Links a step's span may carry: one per request, up to this many.</summary>
    const int MaxStepLinks = 64;

    /// <summary>
    /// The span of one engine step (<c>qwen3.step</c>), a root linked to the spans of the requests it serves; null when
    /// nothing listens or the sampler leaves it out (step spans are sampled by <c>Qwen3:Telemetry:StepTraceRatio</c>).
    /// </summary>
    public static Activity? StartStep(ScheduledStep step, string replica)
    {
        if (!ActivitySource.HasListeners()) return null;
        var links = step.Slices.Select(s => s.Sequence.TraceContext).Where(c => c != default).Distinct().Take(MaxStepLinks)
            .Select(c => new ActivityLink(c));
        int decode = step.Slices.Count(s => s.Count == 1 && s.Start >= s.Sequence.PromptLength);
        var activity = ActivitySource.StartActivity("qwen3.step", ActivityKind.Internal, parentContext: default, links: links);
        if (activity is null) return null;
        activity.SetTag("qwen3.replica", replica);
        activity.SetTag("qwen3.batch_size", step.Slices.Count);
        activity.SetTag("qwen3.decode_tokens", decode);
        activity.SetTag("qwen3.prefill_tokens", step.InputIds.Length - decode);
        return activity;
    }

    /// <summary>A request was admitted into a step for the first time: its queue time and prefix-cache lookup.</summary>
    internal static void Admitted(Sequence sequence)
    {
        QueueTime.Record(Stopwatch.GetElapsedTime(sequence.ArrivedAt).TotalSeconds);
        PrefixCacheQueries.Add(sequence.PromptLength);
        PrefixCacheHits.Add(sequence.CachedPromptTokens);
    }

    /// <summary>A request has answered.</summary>
    internal static void Finished(Sequence sequence)
    {
        Requests.Add(1, new KeyValuePair<string, object?>("finish_reason", sequence.FinishReason));
        PromptTokens.Add(sequence.PromptLength);
        CachedPromptTokens.Add(sequence.CachedPromptTokens);
        RequestPromptTokens.Record(sequence.PromptLength);
        RequestGenerationTokens.Record(sequence.OutputLength);
    }
}
