namespace Qwen3Cluster.Tests.Support;

/// <summary>A redis-server of a test's own on a free loopback port (CI installs redis-server).</summary>
public sealed class RedisServer : IAsyncDisposable
{
    readonly System.Diagnostics.Process _process;
    public string ConnectionString { get; }

    RedisServer(System.Diagnostics.Process process, int port)
    {
        _process = process;
        ConnectionString = $"127.0.0.1:{port}";
    }

    public static async Task<RedisServer> StartAsync()
    {
        int port;
        using (var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        }
        var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("redis-server",
            ["--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]) { RedirectStandardOutput = true })
            ?? throw new InvalidOperationException("redis-server did not start (install it: apt-get install redis-server)");
        for (int i = 0; i < 100; i++)
        {
            try
            {
                using var client = new System.Net.Sockets.TcpClient();
                await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
                return new RedisServer(process, port);
            }
            catch (System.Net.Sockets.SocketException)
            {
                await Task.Delay(100);
            }
        }
        process.Kill();
        throw new InvalidOperationException($"redis-server did not listen on port {port} within 10 s");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill();
        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}

/// <summary>
/// A PostgreSQL server of a test's own (Debian's postgresql package, which CI installs): a fresh cluster in a
/// temporary folder on a free loopback port, trust authentication for user orleans, run as the postgres user when
/// the tests run as root (PostgreSQL refuses root).
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    readonly string _bin, _data;
    public string ConnectionString { get; }

    PostgresServer(string bin, string data, int port)
    {
        _bin = bin;
        _data = data;
        ConnectionString = $"Host=127.0.0.1;Port={port};Username=orleans;Database=postgres";
    }

    static bool Root => Environment.UserName == "root";

    static async Task RunAsync(string program, params string[] args) => await RunAsync(true, program, args);

    static async Task RunAsync(bool asPostgres, string program, params string[] args)
    {
        var start = Root && asPostgres
            ? new System.Diagnostics.ProcessStartInfo("runuser", ["-u", "postgres", "--", program, .. args])
            : new System.Diagnostics.ProcessStartInfo(program, args);
        start.RedirectStandardOutput = start.RedirectStandardError = true;
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(program)} exited {process.ExitCode}: {await output}{await error}");
    }

    public static async Task<PostgresServer> StartAsync()
    {
        string bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(Directory.Exists).Order().LastOrDefault() ?? ""
            : "";
        if (!File.Exists(Path.Combine(bin, "initdb")))
            throw new InvalidOperationException("PostgreSQL is not installed (apt-get install postgresql)");
        string data = Directory.CreateTempSubdirectory("qwen3-postgres-").FullName;
        if (Root) await RunAsync(false, "chown", "postgres", data);
        int port;
        using (var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        }
        await RunAsync(Path.Combine(bin, "initdb"), "-D", data, "-U", "orleans", "--auth=trust", "-E", "UTF8", "--no-sync");
        await RunAsync(Path.Combine(bin, "pg_ctl"), "start", "-D", data, "-w", "-l", Path.Combine(data, "server.log"),
            "-o", $"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off");
        return new PostgresServer(bin, data, port);
    }

    public async ValueTask DisposeAsync()
    {
        await RunAsync(Path.Combine(_bin, "pg_ctl"), "stop", "-D", _data, "-m", "immediate");
        Directory.Delete(_data, recursive: true);
    }
}
