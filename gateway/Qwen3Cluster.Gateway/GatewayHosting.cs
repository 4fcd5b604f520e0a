using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using System.Net;

namespace Qwen3Cluster.Gateway;

/// <summary>The gRPC and HTTP front door of a silo with the gateway role.</summary>
public static class GatewayHosting
{
    public static WebApplicationBuilder AddQwen3Gateway(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection("Qwen3:Gateway").Get<GatewayOptions>() ?? new GatewayOptions();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<ServedModel>();
        builder.Services.AddSingleton<Callers>();
        builder.Services.AddSingleton<Readiness>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Readiness>());
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = 16 * 1024 * 1024;
            o.EnableDetailedErrors = false;
        });
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            var address = options.ListenOnAnyAddress ? IPAddress.Any : IPAddress.Loopback;
            kestrel.Listen(address, options.GrpcPort, listen => listen.Protocols = HttpProtocols.Http2);
            if (options.HttpPort > 0) kestrel.Listen(address, options.HttpPort, listen => listen.Protocols = HttpProtocols.Http1);
        });
        return builder;
    }

    public static WebApplication MapQwen3Gateway(this WebApplication app)
    {
        app.MapGrpcService<InferenceService>();
        app.MapGrpcService<SessionsService>();
        app.MapGet("/healthz", (Readiness readiness) => readiness.IsReady
            ? Results.Ok(new { status = "serving" })
            : Results.Json(new { status = "starting", detail = readiness.LastError }, statusCode: StatusCodes.Status503ServiceUnavailable));
        return app;
    }
}
