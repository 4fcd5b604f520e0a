using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Qwen3Cluster.Grains.Hosting;

namespace Qwen3Cluster.Silos;

/// <summary>
/// OpenTelemetry for a silo: the Qwen3Cluster meter and activity source with Orleans' own, exported over OTLP when
/// OTEL_EXPORTER_OTLP_ENDPOINT is set, and as Prometheus text at /metrics. Traces: every request
/// (<c>qwen3.request</c>, under ASP.NET Core's span), and a share of the engine steps (<c>qwen3.step</c>, linked to
/// the requests it serves, with its <c>qwen3.stage</c> and <c>qwen3.experts</c> spans below it across silos);
/// spans without a traced parent otherwise (Orleans' own background calls) are not recorded, so tracing stays cheap.
/// </summary>
public static class Telemetry
{
    public const string Name = "Qwen3Cluster";

    public static IServiceCollection AddQwen3Telemetry(this IServiceCollection services, IConfiguration configuration, string siloName,
        bool prometheus)
    {
        bool otlp = !string.IsNullOrEmpty(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(Name, serviceInstanceId: siloName))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(Name, "Microsoft.Orleans").AddRuntimeInstrumentation();
                if (prometheus) metrics.AddPrometheusExporter();
                if (otlp) metrics.AddOtlpExporter();
            })
            .WithTracing(tracing =>
            {
                var telemetry = configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
                if (!(telemetry.StepTraceRatio is >= 0 and <= 1))
                    throw new InvalidOperationException($"{TelemetryOptions.Section}:StepTraceRatio must be between 0 and 1.");
                tracing.SetSampler(new ParentBasedSampler(new RootSampler(telemetry.StepTraceRatio)))
                    .AddSource(Name, "Microsoft.Orleans.Application")
                    // Scrapes and probes are not requests worth a trace.
                    .AddAspNetCoreInstrumentation(o => o.Filter = http =>
                        !http.Request.Path.StartsWithSegments("/metrics") && !http.Request.Path.StartsWithSegments("/healthz")
                        && !http.Request.Path.StartsWithSegments("/grpc.health.v1.Health"));
                if (otlp) tracing.AddOtlpExporter();
            });
        return services;
    }

    /// <summary>
    /// Which spans may start a trace: a client request (ASP.NET Core's span, or ours), and engine steps at the given
    /// ratio (by trace id). Anything else without a parent (Orleans' calls made outside a traced request or step) is
    /// dropped, and so is everything under it.
    /// </summary>
    sealed class RootSampler(double stepRatio) : Sampler
    {
        readonly TraceIdRatioBasedSampler _steps = new(stepRatio);

        public override SamplingResult ShouldSample(in SamplingParameters parameters) => parameters.Name switch
        {
            "qwen3.step" => _steps.ShouldSample(parameters),
            "qwen3.request" or "Microsoft.AspNetCore.Hosting.HttpRequestIn" => new SamplingResult(SamplingDecision.RecordAndSample),
            _ => new SamplingResult(SamplingDecision.Drop),
        };
    }
}
