using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Qwen3Cluster.Gateway;

/// <summary>The gRPC and HTTP front door of a silo with the gateway role.</summary>
public static class GatewayHosting
{
    public const int MaxGrpcMessageBytes = 16 * 1024 * 1024;

    public static WebApplicationBuilder AddQwen3Gateway(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection("Qwen3:Gateway").Get<GatewayOptions>() ?? new GatewayOptions();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<ServedModel>();
        builder.Services.AddSingleton<Readiness>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Readiness>());
        // API keys through ASP.NET Core's authentication: OIDC or JWT bearer would be one more scheme here.
        builder.Services.AddAuthentication(ApiKeyAuthentication.SchemeName)
            .AddScheme<ApiKeyAuthenticationOptions, ApiKeyAuthentication>(ApiKeyAuthentication.SchemeName,
                o => o.Keys = options.ApiKeys.Where(k => k.Length > 0).ToHashSet());
        builder.Services.AddAuthorization();
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = MaxGrpcMessageBytes;
            o.Interceptors.Add<GrpcErrors.Interceptor>();
        });
        builder.Services.AddGrpcReflection();
        builder.Services.AddGrpcHealthChecks()
            .AddCheck<ReadinessCheck>("model");
        builder.Services.Configure<Grpc.AspNetCore.HealthChecks.GrpcHealthChecksOptions>(o => o.UseHealthChecksCache = false);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            var address = options.ListenOnAnyAddress ? IPAddress.Any : IPAddress.Loopback;
            var certificate = LoadCertificate(options.Tls);
            kestrel.Listen(address, options.GrpcPort, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (certificate is not null) listen.UseHttps(certificate);
            });
            if (options.HttpPort > 0)
            {
                kestrel.Listen(address, options.HttpPort, listen =>
                {
                    // HTTP/2 without TLS needs prior knowledge, which OpenAI clients do not have.
                    listen.Protocols = certificate is null ? HttpProtocols.Http1 : HttpProtocols.Http1AndHttp2;
                    if (certificate is not null) listen.UseHttps(certificate);
                });
            }
        });
        return builder;
    }

    static X509Certificate2? LoadCertificate(TlsOptions? tls)
    {
        if (tls is null || string.IsNullOrWhiteSpace(tls.CertificatePath)) return null;
        return tls.KeyPath is { Length: > 0 }
            ? X509Certificate2.CreateFromPemFile(tls.CertificatePath, tls.KeyPath)
            : X509CertificateLoader.LoadPkcs12FromFile(tls.CertificatePath, tls.Password);
    }

    /// <summary>The endpoints: the gRPC services and the OpenAI-style API require a caller; health, reflection and metrics do not.</summary>
    public static WebApplication MapQwen3Gateway(this WebApplication app)
    {
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseMiddleware<GrpcUtf8Guard>();
        app.MapGrpcService<InferenceService>().RequireAuthorization();
        app.MapGrpcService<SessionsService>().RequireAuthorization();
        app.MapGrpcService<ClusterService>().RequireAuthorization();
        app.MapGrpcReflectionService();
        app.MapGrpcHealthChecksService();
        app.MapGet("/healthz", (Readiness readiness) => readiness.IsReady
            ? Results.Ok(new { status = "serving" })
            : Results.Json(new { status = "starting", detail = readiness.LastError }, statusCode: StatusCodes.Status503ServiceUnavailable));
        app.MapOpenAi().RequireAuthorization();
        return app;
    }

    sealed class ReadinessCheck(Readiness readiness) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            Task.FromResult(readiness.IsReady
                ? HealthCheckResult.Healthy("model loaded, every planned grain placed")
                : HealthCheckResult.Unhealthy(readiness.LastError ?? "loading"));
    }
}
