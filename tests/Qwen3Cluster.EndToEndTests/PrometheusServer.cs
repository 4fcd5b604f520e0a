using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>
/// A real Prometheus (Debian's prometheus package, which CI installs) of a test's own: a temporary data folder, a
/// free loopback port, scraping the given /metrics targets every second. Queries go through its HTTP API.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    readonly Processes.Running _process;
    readonly string _data;
    readonly HttpClient _http;

    PrometheusServer(Processes.Running process, string data, int port)
    {
        _process = process;
        _data = data;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
    }

    public static Task<PrometheusServer> StartAsync(params string[] targets) => StartAsync(targets, ruleFiles: []);

    /// <summary>Also evaluates the rules in <paramref name="ruleFiles"/> every second.</summary>
    public static async Task<PrometheusServer> StartAsync(string[] targets, string[] ruleFiles)
    {
        string binary = new[] { "/usr/bin/prometheus", "/usr/local/bin/prometheus" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("prometheus is not installed (apt-get install prometheus)");
        string data = Directory.CreateTempSubdirectory("qwen3-prometheus-").FullName;
        string config = Path.Combine(data, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files: [{string.Join(", ", ruleFiles.Select(f => $"'{f}'"))}]
            scrape_configs:
              - job_name: qwen3
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(t => $"'{t}'"))}]
            """);
        int port = Processes.FreePort();
        var start = new ProcessStartInfo(binary, [$"--config.file={config}", $"--storage.tsdb.path={Path.Combine(data, "tsdb")}",
            $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]);
        var server = new PrometheusServer(new Processes.Running(start), data, port);
        await server._process.WaitForHttpAsync($"http://127.0.0.1:{port}/-/ready", TimeSpan.FromSeconds(60));
        return server;
    }

    /// <summary>An instant query: each series' labels and value.</summary>
    public async Task<List<(Dictionary<string, string> Labels, double Value)>> QueryAsync(string promql)
    {
        string json = await _http.GetStringAsync($"/api/v1/query?query={Uri.EscapeDataString(promql)}");
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        if (root.GetProperty("status").GetString() != "success") throw new InvalidOperationException($"{promql}: {json}");
        var series = new List<(Dictionary<string, string>, double)>();
        foreach (var item in root.GetProperty("data").GetProperty("result").EnumerateArray())
        {
            var labels = item.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
            string value = item.GetProperty("value")[1].GetString()!;
            series.Add((labels, double.Parse(value, CultureInfo.InvariantCulture)));
        }
        return series;
    }

    /// <summary>Polls <paramref name="promql"/> until <paramref name="done"/> holds for its result (scrapes come every second).</summary>
    public async Task<List<(Dictionary<string, string> Labels, double Value)>> WaitForAsync(string promql,
        Func<List<(Dictionary<string, string> Labels, double Value)>, bool> done, TimeSpan? timeout = null)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var result = await QueryAsync(promql);
            if (done(result)) return result;
            if (clock.Elapsed > (timeout ?? TimeSpan.FromSeconds(60)))
                throw new TimeoutException($"Prometheus: {promql} gave [{string.Join("; ", result.Select(r => r.Value))}]\n{_process.Output}");
            await Task.Delay(250);
        }
    }

    /// <summary>Every loaded rule's name, health and last error (GET /api/v1/rules).</summary>
    public async Task<List<(string Name, string Health, string Error, bool Evaluated)>> RulesAsync()
    {
        using var doc = JsonDocument.Parse(await _http.GetStringAsync("/api/v1/rules"));
        return doc.RootElement.GetProperty("data").GetProperty("groups").EnumerateArray()
            .SelectMany(g => g.GetProperty("rules").EnumerateArray())
            .Select(r => (r.GetProperty("name").GetString()!, r.GetProperty("health").GetString()!,
                r.TryGetProperty("lastError", out var e) ? e.GetString() ?? "" : "",
                !r.GetProperty("lastEvaluation").GetString()!.StartsWith("0001-")))
            .ToList();
    }

    /// <summary>The rules once every one of them has been evaluated at least once.</summary>
    public async Task<List<(string Name, string Health, string Error, bool Evaluated)>> WaitForRulesAsync()
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var rules = await RulesAsync();
            if (rules.Count > 0 && rules.All(r => r.Evaluated)) return rules;
            if (clock.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException($"rules not evaluated: {string.Join(", ", rules.Select(r => r.Name))}\n{_process.Output}");
            await Task.Delay(250);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _process.DisposeAsync();
        try { Directory.Delete(_data, recursive: true); } catch (IOException) { }
    }
}
