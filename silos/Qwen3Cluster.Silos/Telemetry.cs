using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Qwen3Cluster.Silos;

/// <summary>
/// OpenTelemetry for a silo: the Qwen3Cluster meter and activity source with Orleans' own, exported over OTLP when
/// OTEL_EXPORTER_OTLP_ENDPOINT is set, and as Prometheus text on the gateway's HTTP port (/metrics).
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
                tracing.AddSource(Name, "Microsoft.Orleans.Application").AddAspNetCoreInstrumentation();
                if (otlp) tracing.AddOtlpExporter();
            });
        return services;
    }
}
