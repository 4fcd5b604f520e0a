namespace Qwen3Cluster.Grains.Hosting;

/// <summary>What a silo exports (configuration section <c>Qwen3:Telemetry</c>).</summary>
public sealed class TelemetryOptions
{
    public const string Section = "Qwen3:Telemetry";

    /// <summary>
    /// Where a silo without the gateway role serves <c>/metrics</c> (and <c>/healthz</c>) over HTTP; a gateway serves
    /// them on its HTTP port. 0: not at all.
    /// </summary>
    public int MetricsPort { get; set; } = 9464;

    /// <summary>
    /// Where a silo without the gateway role serves <c>grpc.health.v1.Health</c> (HTTP/2 cleartext; SERVING while it is an
    /// active member of the cluster), for Kubernetes' probes; a gateway serves it on its gRPC port. 0: not at all.
    /// </summary>
    public int HealthPort { get; set; } = 9463;

    /// <summary>Listen on every address rather than loopback (in a container).</summary>
    public bool ListenOnAnyAddress { get; set; }

    /// <summary>Also count routed tokens per decoder layer and expert (a series per layer x expert: opt-in).</summary>
    public bool ExpertDetail { get; set; }

    /// <summary>
    /// The share of engine steps traced (a <c>qwen3.step</c> span with its stage and expert-group spans); requests are
    /// always traced when traces are exported. 0 to 1.
    /// </summary>
    public double StepTraceRatio { get; set; } = 0.01;
}
