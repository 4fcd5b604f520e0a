using System.CommandLine;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Protos.V1;
using Spectre.Console;

namespace Qwen3Cluster.Cli.Commands;

/// <summary><c>qwen3 cluster status</c>: the silos and where every grain of the model runs, from a gateway's Cluster service.</summary>
public static class ClusterCommand
{
    public static Command Create()
    {
        var endpoint = new Option<string>("--endpoint") { Description = "gRPC address of a gateway", DefaultValueFactory = _ => "http://127.0.0.1:50051" };
        var apiKey = new Option<string?>("--api-key") { Description = "API key (default: $QWEN3_API_KEY)" };
        var json = new Option<bool>("--json") { Description = "Print the description as JSON instead of tables" };
        var status = new Command("status", "The silos (name, address, roles, device, status) and every grain of the model (silo, layers, experts, loaded, calls, routed tokens)")
        {
            endpoint, apiKey, json,
        };
        status.SetAction(async (parse, ct) =>
        {
            using var channel = GrpcConnection.Open(parse.GetValue(endpoint)!, parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("QWEN3_API_KEY"));
            var cluster = await new Protos.V1.Cluster.ClusterClient(channel).DescribeClusterAsync(new DescribeClusterRequest(), cancellationToken: ct);
            if (parse.GetValue(json))
            {
                Console.WriteLine(Google.Protobuf.JsonFormatter.Default.Format(cluster));
                return 0;
            }
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
            if (Console.IsOutputRedirected) console.Profile.Width = 200;
            var silos = new Table().Title($"silos of {Markup.Escape(cluster.Model)}").AddColumns("silo", "address", "roles", "device", "status");
            foreach (var s in cluster.Silos)
                silos.AddRow(Markup.Escape(s.Name), Markup.Escape(s.Address), Markup.Escape(string.Join(',', s.Roles)), Markup.Escape(s.Device), Markup.Escape(s.Status));
            console.Write(silos);
            var grains = new Table().Title("grains").AddColumns("grain", "kind", "silo", "layers", "experts", "loaded", "calls", "routed tokens");
            foreach (var g in cluster.Grains)
            {
                grains.AddRow(Markup.Escape(g.Key), g.Kind,
                    g.Error.Length > 0 ? $"[red]{Markup.Escape(g.Error)}[/]" : Markup.Escape(g.Silo),
                    g.Kind == "replica" ? "" : Markup.Escape($"[{g.LayerStart}, {g.LayerEnd})"),
                    g.Kind == "expert_group" ? Markup.Escape(new ExpertRange(g.ExpertStart, g.ExpertEnd, g.ExpertSlice, Math.Max(1, g.ExpertSlices)).ToString()) : "",
                    g.Loaded ? "yes" : "no", g.Calls.ToString(), g.Kind == "expert_group" ? g.RoutedTokens.ToString() : "");
            }
            console.Write(grains);
            return 0;
        });
        return new Command("cluster", "Look at a running cluster") { status };
    }
}
