using System.Diagnostics;
using System.Text.Json;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>qwen3 chat and qwen3 bench, run as processes against the shared server.</summary>
[Collection(ServerCollection.Name)]
public sealed class ToolTests(ServerFixture fixture)
{
    [Fact]
    public async Task ChatKeepsItsSessionAcrossTurns()
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[] { Processes.Qwen3Dll, "chat", "--endpoint", fixture.Server.GrpcAddress, "--api-key", ServerFixture.KeyA,
                     "--max-tokens", "6", "--temperature", "0" })
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        await process.StandardInput.WriteLineAsync("Hello there");
        await process.StandardInput.WriteLineAsync("And again");
        await process.StandardInput.WriteLineAsync("/exit");
        process.StandardInput.Close();
        string stdout = await process.StandardOutput.ReadToEndAsync();
        string stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.Equal(0, process.ExitCode);
        // Each reply ends with a usage line on stderr (after the "> " prompt): "[length; P prompt tokens, C from cache, G generated]".
        var usage = stderr.Split('\n').Where(l => l.Contains("[length;")).Select(l => l[l.IndexOf("[length;", StringComparison.Ordinal)..]).ToArray();
        Assert.Equal(2, usage.Length);
        Assert.Contains(" 0 from cache", usage[0]);
        // The second turn reuses the whole first turn: its prompt and its 6 generated tokens.
        int firstPrompt = int.Parse(usage[0].Split(' ')[1]);
        Assert.Contains($" {firstPrompt + 6} from cache", usage[1]);
        Assert.Equal(2, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public async Task BenchReportsLatencyAndThroughputAsJson()
    {
        string output = await Processes.RunQwen3Async("bench", "--endpoint", fixture.Server.GrpcAddress, "--api-key", ServerFixture.KeyA,
            "--concurrency", "3", "--requests", "6", "--prompt-tokens", "24", "--max-tokens", "5", "--multi-turn", "2", "--json");
        using var report = JsonDocument.Parse(output);
        var root = report.RootElement;
        Assert.Equal(6, root.GetProperty("completed").GetInt32());
        Assert.Equal(0, root.GetProperty("errors").GetInt32());
        Assert.Equal(6 * 2 * 5, root.GetProperty("output_tokens").GetInt64());
        Assert.True(root.GetProperty("cached_prompt_tokens").GetInt64() > 0);
        Assert.True(root.GetProperty("ttft_ms").GetProperty("p50").GetDouble() > 0);
        Assert.True(root.GetProperty("itl_ms").GetProperty("p99").GetDouble() >= root.GetProperty("itl_ms").GetProperty("p50").GetDouble());
        Assert.True(root.GetProperty("output_tokens_per_second").GetDouble() > 0);
    }

    [Fact]
    public async Task BenchWarmupRequestsRunFirstAndAreNotCounted()
    {
        string output = await Processes.RunQwen3Async("bench", "--endpoint", fixture.Server.GrpcAddress, "--api-key", ServerFixture.KeyA,
            "--concurrency", "2", "--requests", "3", "--warmup", "2", "--prompt-tokens", "16", "--max-tokens", "4", "--json");
        using var report = JsonDocument.Parse(output);
        var root = report.RootElement;
        Assert.Equal(2, root.GetProperty("settings").GetProperty("warmup").GetInt32());
        Assert.Equal(3, root.GetProperty("completed").GetInt32());
        Assert.Equal(3 * 4, root.GetProperty("output_tokens").GetInt64());
        Assert.Equal(3 * 16, root.GetProperty("prompt_tokens").GetInt64());
        // The warm-up's prompts are its own: the measured requests found nothing of them in the prefix cache.
        Assert.Equal(0, root.GetProperty("cached_prompt_tokens").GetInt64());

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => Processes.RunQwen3Async("bench", "--endpoint",
            fixture.Server.GrpcAddress, "--concurrency", "1", "--requests", "1", "--warmup", "-1"));
        Assert.Contains("exited 2: --warmup must be 0 or more.", refused.Message);
    }
}
