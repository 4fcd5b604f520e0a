using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>Starting the real qwen3 tool and scripts as processes, on free loopback ports.</summary>
public static class Processes
{
    public static string RepositoryRoot { get; } = FindRoot();

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Qwen3Cluster.sln"))) return dir.FullName;
        throw new InvalidOperationException("Qwen3Cluster.sln not found above the test folder.");
    }

    /// <summary>The qwen3 tool built with the same configuration as these tests.</summary>
    public static string Qwen3Dll
    {
        get
        {
            string configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
            string path = Path.Combine(RepositoryRoot, "tools", "Qwen3Cluster.Cli", "bin", configuration, "net10.0", "qwen3.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException("Build tools/Qwen3Cluster.Cli first.", path);
        }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>A block of <paramref name="count"/> consecutive free ports.</summary>
    public static int FreePorts(int count)
    {
        // Below the kernel's ephemeral range, where outgoing connections and FreePort() take theirs: a block chosen
        // there could be taken by one of them (a Redis, a client socket) between this check and the silo's bind.
        int ephemeral = 32768;
        try
        {
            ephemeral = int.Parse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0]);
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
        {
        }
        for (int attempt = 0; attempt < 50; attempt++)
        {
            int first = Random.Shared.Next(10000, Math.Max(10001, ephemeral - count));
            var listeners = new List<TcpListener>();
            try
            {
                for (int i = 0; i < count; i++)
                {
                    var l = new TcpListener(IPAddress.Loopback, first + i);
                    l.Start();
                    listeners.Add(l);
                }
                return first;
            }
            catch (SocketException)
            {
            }
            finally
            {
                foreach (var l in listeners) l.Stop();
            }
        }
        throw new InvalidOperationException("No block of free ports found.");
    }

    /// <summary>Runs qwen3 to completion and returns its standard output; a non-zero exit fails with its stderr.</summary>
    public static async Task<string> RunQwen3Async(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Qwen3Dll);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"qwen3 {string.Join(' ', args)} exited {process.ExitCode}: {await stderr}");
        return await stdout;
    }

    /// <summary>A long-running process whose output is kept for failure messages.</summary>
    public sealed class Running : IAsyncDisposable
    {
        readonly StringBuilder _output = new();
        public Process Process { get; }

        public Running(ProcessStartInfo start)
        {
            start.RedirectStandardOutput = true;
            start.RedirectStandardError = true;
            Process = Process.Start(start)!;
            Process.OutputDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
            Process.ErrorDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public string Output
        {
            get { lock (_output) return _output.ToString(); }
        }

        /// <summary>Sends SIGINT (Ctrl-C) and waits for a clean exit.</summary>
        public async Task<int> InterruptAsync(TimeSpan timeout)
        {
            if (Process.HasExited) return Process.ExitCode;
            using (var kill = Process.Start("kill", ["-INT", Process.Id.ToString()])) await kill!.WaitForExitAsync();
            using var cts = new CancellationTokenSource(timeout);
            await Process.WaitForExitAsync(cts.Token);
            return Process.ExitCode;
        }

        public async Task WaitForHttpAsync(string url, TimeSpan timeout, HttpMessageHandler? handler = null)
        {
            using var http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
            var deadline = DateTime.UtcNow + timeout;
            while (DateTime.UtcNow < deadline)
            {
                if (Process.HasExited) throw new InvalidOperationException($"The process exited ({Process.ExitCode}):\n{Output}");
                try
                {
                    if ((await http.GetAsync(url)).IsSuccessStatusCode) return;
                }
                catch (HttpRequestException)
                {
                }
                await Task.Delay(250);
            }
            throw new TimeoutException($"{url} did not answer in {timeout}:\n{Output}");
        }

        public async ValueTask DisposeAsync()
        {
            if (!Process.HasExited)
            {
                try
                {
                    await InterruptAsync(TimeSpan.FromSeconds(30));
                }
                catch (OperationCanceledException)
                {
                    Process.Kill(entireProcessTree: true);
                }
            }
            Process.Dispose();
        }
    }
}
