using System.Diagnostics;
using Xunit.Abstractions;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>
/// Every overlay of k8s/ renders, and every object it yields validates against the Kubernetes schemas (and KEDA's and
/// the Prometheus Operator's for their resources): tests/k8s/check-manifests.mjs, with its npm packages installed on
/// first use.
/// </summary>
public sealed class KubernetesManifestTests(ITestOutputHelper output)
{
    static async Task<(int Code, string Output)> RunAsync(string program, string directory, params string[] args)
    {
        var start = new ProcessStartInfo(program, args) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    [Fact]
    public async Task EveryOverlayRendersAndEveryObjectValidates()
    {
        string dir = Path.Combine(Processes.RepositoryRoot, "tests", "k8s");
        if (!Directory.Exists(Path.Combine(dir, "node_modules")))
        {
            var (installed, log) = await RunAsync("npm", dir, "ci", "--no-audit", "--no-fund");
            Assert.True(installed == 0, $"npm ci in tests/k8s failed:\n{log}");
        }
        var (code, text) = await RunAsync("node", dir, "check-manifests.mjs");
        output.WriteLine(text);
        Assert.True(code == 0, text);
        Assert.Contains("overlays/cpu: 16 objects valid", text);
        Assert.Contains("overlays/gpu: 16 objects valid", text);
    }
}
