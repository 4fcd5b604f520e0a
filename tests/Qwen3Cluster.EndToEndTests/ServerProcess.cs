using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>A <c>qwen3 serve</c> process on free ports.</summary>
public sealed class ServerProcess : IAsyncDisposable
{
    public Processes.Running Process { get; }
    public int GrpcPort { get; }
    public int HttpPort { get; }
    public int SiloPort { get; }
    public string Scheme { get; }
    public string GrpcAddress => $"{Scheme}://127.0.0.1:{GrpcPort}";
    public string HttpAddress => $"{Scheme}://127.0.0.1:{HttpPort}";

    ServerProcess(Processes.Running process, int grpc, int http, int silo, string scheme)
    {
        Process = process;
        GrpcPort = grpc;
        HttpPort = http;
        SiloPort = silo;
        Scheme = scheme;
    }

    /// <summary>Starts a silo; <paramref name="settings"/> are configuration keys (Qwen3:Gateway:ApiKeys:0, ...).</summary>
    public static ServerProcess Start(string model, IReadOnlyDictionary<string, string>? settings = null, string[]? args = null,
        bool tls = false, int? primarySiloPort = null)
    {
        int ports = Processes.FreePorts(4);
        var start = new ProcessStartInfo("dotnet");
        start.ArgumentList.Add(Processes.Qwen3Dll);
        start.ArgumentList.Add("serve");
        start.ArgumentList.Add("--model");
        start.ArgumentList.Add(model);
        start.ArgumentList.Add("--grpc-port");
        start.ArgumentList.Add(ports.ToString());
        start.ArgumentList.Add("--http-port");
        start.ArgumentList.Add((ports + 1).ToString());
        foreach (var a in args ?? []) start.ArgumentList.Add(a);
        start.Environment["Qwen3__Clustering__SiloPort"] = (ports + 2).ToString();
        start.Environment["Qwen3__Clustering__GatewayPort"] = (ports + 3).ToString();
        start.Environment["Qwen3__Model__KvBlocks"] = "512";
        if (primarySiloPort is int primary) start.Environment["Qwen3__Clustering__PrimarySiloPort"] = primary.ToString();
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) start.Environment[key.Replace(":", "__")] = value;
        return new ServerProcess(new Processes.Running(start), ports, ports + 1, ports + 2, tls ? "https" : "http");
    }

    public Task WaitUntilServingAsync(HttpMessageHandler? handler = null) =>
        Process.WaitForHttpAsync($"{HttpAddress}/healthz", TimeSpan.FromMinutes(3), handler);

    /// <summary>The value of a Prometheus gauge scraped from /metrics.</summary>
    public async Task<double> MetricAsync(string name)
    {
        using var http = new HttpClient();
        string text = await http.GetStringAsync($"{HttpAddress}/metrics");
        var match = Regex.Match(text, $@"^{Regex.Escape(name)}(\{{[^}}]*\}})? ([0-9.eE+-]+)", RegexOptions.Multiline);
        return match.Success ? double.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)
            : throw new InvalidOperationException($"{name} is not in /metrics:\n{text[..Math.Min(text.Length, 2000)]}");
    }

    public ValueTask DisposeAsync() => Process.DisposeAsync();
}
