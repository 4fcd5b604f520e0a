using System.Net;
using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Dashboard;
using Qwen3Cluster.Gateway;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Silos;

namespace Qwen3Cluster.Cli.Commands;

/// <summary>
/// <c>qwen3 serve</c>: a silo. With no configuration it is the embedded default, one process with every role on
/// localhost clustering; with <c>--config</c> (and flags, and QWEN3__ environment variables) it is one silo of a
/// larger cluster. Silos with the gateway role serve gRPC and OpenAI-style HTTP.
/// </summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Checkpoint folder (default: a demo model made on first use)" };
        var grpcPort = new Option<int?>("--grpc-port") { Description = "gRPC port (default 50051)" };
        var httpPort = new Option<int?>("--http-port") { Description = "OpenAI-compatible HTTP port (default 8000, 0: off)" };
        var config = new Option<string?>("--config") { Description = "JSON file with a Qwen3 section (model, silo, clustering, placement)" };
        var name = new Option<string?>("--name") { Description = "This silo's name in the plan" };
        var roles = new Option<string?>("--roles") { Description = "Comma-separated roles: gateway, stage, experts (default: all)" };
        var stages = new Option<int?>("--stages") { Description = "Pipeline stages to cut the model into" };
        var groups = new Option<int?>("--expert-groups") { Description = "Expert groups per stage" };
        var slices = new Option<int?>("--expert-slices") { Description = "Slices each expert group is cut into along the experts' intermediate size (tensor-parallel experts)" };
        var blocks = new Option<int?>("--kv-blocks") { Description = "KV cache blocks per stage pool" };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for tensor work" };
        var device = new Option<string?>("--device") { Description = "cpu or cuda[:N]" };
        var quantize = new Option<string?>("--quantize") { Description = "none, or int8: Q8_0 blocks made at load (CPU silos)" };
        quantize.AcceptOnlyFromAmong("none", "int8");
        var command = new Command("serve", "Run a silo of the cluster (by default: the whole cluster in this process)")
        {
            model, grpcPort, httpPort, config, name, roles, stages, groups, slices, blocks, threads, device, quantize,
        };
        command.SetAction(async (parse, ct) =>
        {
            var overrides = new Dictionary<string, string?>();
            void Set<T>(Option<T> option, string key)
            {
                if (parse.GetValue(option) is { } value) overrides[key] = value.ToString();
            }
            Set(model, "Qwen3:Model:Path");
            Set(grpcPort, "Qwen3:Gateway:GrpcPort");
            Set(httpPort, "Qwen3:Gateway:HttpPort");
            Set(name, "Qwen3:Silo:Name");
            Set(stages, "Qwen3:Model:Stages");
            Set(groups, "Qwen3:Model:ExpertGroups");
            Set(slices, "Qwen3:Model:ExpertSlices");
            Set(blocks, "Qwen3:Model:KvBlocks");
            Set(threads, "Qwen3:Silo:Threads");
            Set(device, "Qwen3:Silo:Device");
            Set(quantize, "Qwen3:Model:Quantize");
            if (parse.GetValue(roles) is { } list)
            {
                var items = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                for (int i = 0; i < items.Length; i++) overrides[$"Qwen3:Silo:Roles:{i}"] = items[i];
            }
            var configuration = new ConfigurationBuilder();
            if (parse.GetValue(config) is { } file) configuration.AddJsonFile(Path.GetFullPath(file), optional: false);
            configuration.AddEnvironmentVariables().AddInMemoryCollection(overrides);
            var settings = configuration.Build();
            if (string.IsNullOrWhiteSpace(settings["Qwen3:Model:Path"]))
                overrides["Qwen3:Model:Path"] = await DemoModel.EnsureAsync(ct);
            string path = overrides.GetValueOrDefault("Qwen3:Model:Path") ?? settings["Qwen3:Model:Path"]!;
            try
            {
                // Fail now, with the file and field at fault, rather than leave the silo forever not ready.
                var modelConfig = Qwen3Cluster.Model.Config.Qwen3Config.Load(path);
                Qwen3Cluster.Model.Checkpoint.CheckpointReader.Open(path).Dispose();
                ModelDeployment.SplitExperts(modelConfig, settings.GetSection("Qwen3:Model").Get<ModelOptions>() ?? new ModelOptions());
                Qwen3Cluster.Model.Layers.WeightStorages.Parse(overrides.GetValueOrDefault("Qwen3:Model:Quantize") ?? settings["Qwen3:Model:Quantize"],
                    "Qwen3:Model:Quantize");
            }
            catch (Exception e) when (e is Qwen3Cluster.Model.Config.ModelConfigException or Qwen3Cluster.Model.Checkpoint.CheckpointException
                or ArgumentException)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
            try
            {
                await RunAsync(parse.GetValue(config), overrides, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // Stopped (Ctrl-C, SIGTERM) before the silo had started, e.g. while it was still joining its cluster:
                // the host gives up the start with this, which is a stop like any other, not a crash.
                Console.Error.WriteLine("stopped before the silo had started");
            }
            return 0;
        });
        return command;
    }

    static async Task RunAsync(string? configFile, Dictionary<string, string?> overrides, CancellationToken ct)
    {
        void Configure(IConfigurationBuilder configuration)
        {
            if (configFile is not null) configuration.AddJsonFile(Path.GetFullPath(configFile), optional: false);
            configuration.AddEnvironmentVariables().AddInMemoryCollection(overrides);
        }
        var probe = new ConfigurationBuilder();
        Configure(probe);
        var silo = probe.Build().GetSection("Qwen3:Silo").Get<SiloRoleOptions>() ?? new SiloRoleOptions();
        var telemetry = probe.Build().GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        if (!silo.EffectiveRoles.Contains(SiloRoleOptions.Gateway) && telemetry.MetricsPort <= 0)
        {
            // Neither clients nor a metrics scrape to serve: no web server at all.
            var host = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
            Configure(host.Configuration);
            QuietLogs(host.Logging);
            host.UseOrleans(s => s.AddQwen3(host.Configuration));
            host.Services.AddQwen3Telemetry(host.Configuration, silo.Name, prometheus: false);
            await host.Build().RunAsync(ct);
            return;
        }
        if (!silo.EffectiveRoles.Contains(SiloRoleOptions.Gateway))
        {
            // A stage or experts silo serves no clients, only what it does: /metrics and /healthz on its metrics port.
            var web = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
            Configure(web.Configuration);
            QuietLogs(web.Logging);
            var address = telemetry.ListenOnAnyAddress ? IPAddress.Any : IPAddress.Loopback;
            web.WebHost.ConfigureKestrel(kestrel =>
            {
                kestrel.Listen(address, telemetry.MetricsPort);
                // gRPC health for Kubernetes' probes: HTTP/2 without TLS needs an endpoint of its own.
                if (telemetry.HealthPort > 0) kestrel.Listen(address, telemetry.HealthPort, l => l.Protocols = HttpProtocols.Http2);
            });
            web.UseOrleans(s => s.AddQwen3(web.Configuration));
            web.Services.AddQwen3Telemetry(web.Configuration, silo.Name, prometheus: true);
            web.Services.AddGrpc();
            web.Services.AddGrpcHealthChecks().AddCheck<SiloActiveCheck>("silo");
            web.Services.Configure<Grpc.AspNetCore.HealthChecks.GrpcHealthChecksOptions>(o => o.UseHealthChecksCache = false);
            var metrics = web.Build();
            metrics.MapPrometheusScrapingEndpoint("/metrics");
            metrics.MapGet("/healthz", () => Results.Text("serving\n"));
            metrics.MapGrpcHealthChecksService();
            await metrics.RunAsync(ct);
            return;
        }
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        Configure(builder.Configuration);
        QuietLogs(builder.Logging);
        builder.UseOrleans(s =>
        {
            s.AddQwen3(builder.Configuration);
            s.AddDashboard();
        });
        builder.Services.AddQwen3Telemetry(builder.Configuration, silo.Name, prometheus: true);
        builder.AddQwen3Gateway();
        var app = builder.Build();
        app.MapQwen3Gateway();
        app.MapOrleansDashboard("/dashboard").RequireAuthorization();
        app.MapPrometheusScrapingEndpoint("/metrics");
        await app.RunAsync(ct);
    }

    /// <summary>Information from Qwen3Cluster and hosting, warnings only from the frameworks' internals (overridable by Logging:LogLevel).</summary>
    static void QuietLogs(ILoggingBuilder logging)
    {
        logging.AddFilter("Orleans", LogLevel.Warning);
        logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        logging.AddFilter("Microsoft.Orleans", LogLevel.Warning);
        // A time on every line: what an operator (or a test) reads a failover's timeline from.
        logging.AddSimpleConsole(o => o.TimestampFormat = "HH:mm:ss.fff ");
        // Orleans places grains through a Polly pipeline that logs every attempt and every retry (a silo is gone).
        logging.AddFilter("Polly", LogLevel.Error);
    }
}
