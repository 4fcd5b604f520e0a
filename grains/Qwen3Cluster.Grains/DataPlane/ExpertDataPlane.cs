using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Runtime;
using Qwen3Cluster.Grains.Hosting;

namespace Qwen3Cluster.Grains.DataPlane;

/// <summary>Runs one call on a loaded expert group: layer, x, expert ids, weights, the caller's trace context (or default).</summary>
public delegate TensorPayload ExpertGroupRun(int layer, TensorPayload x, TensorPayload expertIds, TensorPayload weights, ActivityContext parent);

/// <summary>As <see cref="ExpertGroupRun"/> for a stage on the same silo: tensors in, a new tensor out (the caller's to dispose), no copies through payloads.</summary>
public delegate TorchSharp.torch.Tensor ExpertGroupLocalRun(int layer, TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor expertIds,
    TorchSharp.torch.Tensor weights, ActivityContext parent);

/// <summary>
/// The experts' data plane on this silo. An expert-group activation registers here once its weights are loaded;
/// stages on other silos then call it over a socket of their own (<see cref="ExpertDataPlaneClient"/>), each
/// connection served by one blocking thread that reads a frame (a layer's calls to this silo's groups), runs them
/// and writes their outputs: no message queue, socket loop or grain scheduler on this side, each of which costs a
/// thread hand-off per call.
/// Orleans still places, activates, hands over and fails over the groups: a call that finds its group gone
/// (moved, unloaded) or its silo unreachable goes through the grain instead. A stage on this silo runs a
/// registered group in place (<see cref="TryRun"/>). <c>Qwen3:Silo:DataPort</c> sets the port (0: any free
/// one, -1: no data plane, every call through the grain).
/// </summary>
public sealed partial class ExpertDataPlane(IOptions<SiloRoleOptions> silo, ILocalSiloDetails local, ILogger<ExpertDataPlane> logger)
    : ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    /// <summary>Connections served at once; a stage holds one per expert silo per step in flight, so this is far more than a cluster uses.</summary>
    const int MaxConnections = 1024;

    readonly ConcurrentDictionary<string, ExpertCallee> _callees = new();
    readonly ConcurrentDictionary<Socket, byte> _connections = new();
    readonly object _gate = new();
    Socket? _listener;
    ExpertEndpoint? _endpoint;
    bool _stopped;
    bool _failed;

    public bool Enabled => silo.Value.DataPort >= 0;

    string? _silo;

    /// <summary>The silo this runs on, as <see cref="ExpertEndpoint.Silo"/> names it.</summary>
    public string Silo => _silo ??= local.SiloAddress.ToParsableString();

    /// <summary>
    /// Where other silos reach the groups registered here (the listener starts on first use); null when off, stopped,
    /// or when it cannot listen (logged once: the groups then take every call through their grains).
    /// </summary>
    public ExpertEndpoint? Endpoint
    {
        get
        {
            if (!Enabled) return null;
            lock (_gate)
            {
                if (_stopped || _failed) return null;
                try
                {
                    return _endpoint ??= Listen();
                }
                catch (InvalidOperationException e)
                {
                    _failed = true;
                    LogCannotListen(e, silo.Value.Name);
                    return null;
                }
            }
        }
    }

    ExpertEndpoint Listen()
    {
        var address = local.SiloAddress.Endpoint.Address;
        // A silo on loopback (one machine) listens there only; one with a routable address on every interface, as its silo port does.
        var bind = IPAddress.IsLoopback(address) ? address
            : address.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any;
        var listener = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(bind, silo.Value.DataPort));
            listener.Listen(64);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new InvalidOperationException($"Qwen3:Silo:DataPort {silo.Value.DataPort}: cannot listen on {bind}: {e.Message}", e);
        }
        _listener = listener;
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        new Thread(() => Accept(listener)) { IsBackground = true, Name = "qwen3-experts-accept" }.Start();
        LogListening(silo.Value.Name, address.ToString(), port);
        return new ExpertEndpoint(address.ToString(), port, Silo);
    }

    /// <summary>Takes calls for the group <paramref name="key"/> (replacing an earlier activation's) until the registration is disposed.</summary>
    public ExpertCallee Register(string key, ExpertGroupRun run, ExpertGroupLocalRun local)
    {
        var callee = new ExpertCallee(this, key, run, local);
        _callees[key] = callee;
        return callee;
    }

    internal void Unregister(ExpertCallee callee) => _callees.TryRemove(new KeyValuePair<string, ExpertCallee>(callee.Key, callee));

    /// <summary>Whether the group <paramref name="key"/> is registered on this silo (and the data plane is on).</summary>
    public bool Hosts(string key) => Enabled && _callees.ContainsKey(key);

    /// <summary>Runs the group <paramref name="key"/> in place when it is registered on this silo; false when it is not (or the data plane is off).</summary>
    public bool TryRun(string key, int layer, TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor expertIds, TorchSharp.torch.Tensor weights,
        out TorchSharp.torch.Tensor? output)
    {
        output = null;
        return Enabled && _callees.TryGetValue(key, out var callee) && callee.TryRun(layer, x, expertIds, weights,
            Activity.Current is { Recorded: true } traced ? traced.Context : default, out output);
    }

    void Accept(Socket listener)
    {
        while (true)
        {
            Socket connection;
            try
            {
                connection = listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return; // stopped
            }
            if (_connections.Count >= MaxConnections)
            {
                LogTooManyConnections(MaxConnections);
                connection.Dispose();
                continue;
            }
            connection.NoDelay = true;
            _connections[connection] = 0;
            new Thread(() => Serve(connection)) { IsBackground = true, Name = "qwen3-experts-call" }.Start();
        }
    }

    /// <summary>One caller's connection: a request, its response, the next request, until the caller closes it or a frame is bad.</summary>
    void Serve(Socket connection)
    {
        try
        {
            while (true)
            {
                if (ExpertWire.Receive(connection) is not { } frame) return;
                ExpertWire.Frame response;
                try
                {
                    response = Answer(frame);
                }
                finally
                {
                    frame.Return();
                }
                try
                {
                    ExpertWire.Send(connection, response);
                }
                finally
                {
                    response.Return();
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException)
        {
            // The caller went away (its silo stopped, or it gave up on a cancelled call): nothing to answer.
        }
        catch (InvalidDataException e)
        {
            LogBadFrame(e, connection.RemoteEndPoint?.ToString() ?? "?");
        }
        finally
        {
            _connections.TryRemove(connection, out _);
            connection.Dispose();
        }
    }

    /// <summary>Runs a frame's calls one after another, on this thread, and answers them in one frame.</summary>
    ExpertWire.Frame Answer(ExpertWire.Frame frame)
    {
        var calls = ExpertWire.ReadRequest(frame.Buffer.AsSpan(0, frame.Length));
        var replies = new ExpertWire.Reply[calls.Length];
        for (int i = 0; i < calls.Length; i++) replies[i] = Answer(calls[i]);
        return ExpertWire.WriteResponse(replies);
    }

    ExpertWire.Reply Answer(ExpertWire.Call call)
    {
        if (!_callees.TryGetValue(call.Key, out var callee))
            return new(ExpertWire.Gone, null, $"Expert group {call.Key} is not hosted on silo {silo.Value.Name}.");
        ActivityContext.TryParse(call.TraceParent, null, isRemote: true, out var parent);
        try
        {
            return callee.TryRun(call.Layer, call.X, call.ExpertIds, call.Weights, parent, out var output)
                ? new(ExpertWire.Ok, output, null)
                : new(ExpertWire.Gone, null, $"Expert group {call.Key} left silo {silo.Value.Name}.");
        }
        catch (Exception e)
        {
            LogCallFailed(e, call.Key);
            return new(ExpertWire.Failed, null, $"Expert group {call.Key} on silo {silo.Value.Name}: {e.Message}");
        }
    }

    public void Participate(ISiloLifecycle lifecycle) =>
        // Stops taking calls as the silo stops being active (leaving, shutting down): callers go through the grains, which move.
        lifecycle.Subscribe(nameof(ExpertDataPlane), ServiceLifecycleStage.Active, _ => Task.CompletedTask, _ =>
        {
            Stop();
            return Task.CompletedTask;
        });

    void Stop()
    {
        lock (_gate)
        {
            _stopped = true;
            _listener?.Dispose();
            _listener = null;
            _endpoint = null;
        }
        foreach (var connection in _connections.Keys) connection.Dispose();
        _callees.Clear();
    }

    public void Dispose() => Stop();

    [LoggerMessage(Level = LogLevel.Information, Message = "Silo {Silo}: expert groups take calls at {Address}:{Port}")]
    partial void LogListening(string silo, string address, int port);

    [LoggerMessage(Level = LogLevel.Error, Message = "Silo {Silo}: the expert data plane cannot listen; its expert groups take every call through Orleans")]
    partial void LogCannotListen(Exception error, string silo);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Expert data plane: {Max} connections open, refusing another")]
    partial void LogTooManyConnections(int max);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Expert data plane: a bad frame from {Peer}; connection closed")]
    partial void LogBadFrame(Exception error, string peer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Expert group {Key}: a data-plane call failed")]
    partial void LogCallFailed(Exception error, string key);
}

/// <summary>
/// An expert-group activation's registration on its silo's data plane. Calls run one at a time, as the grain's own
/// would; disposing it waits for a call in progress, so the activation can free its weights right after.
/// </summary>
public sealed class ExpertCallee : IDisposable
{
    readonly ExpertDataPlane _plane;
    readonly ExpertGroupRun _run;
    readonly ExpertGroupLocalRun _local;
    readonly object _gate = new();
    bool _closed;

    internal ExpertCallee(ExpertDataPlane plane, string key, ExpertGroupRun run, ExpertGroupLocalRun local)
    {
        _plane = plane;
        _run = run;
        _local = local;
        Key = key;
    }

    public string Key { get; }

    /// <summary>Runs the call unless the registration was disposed (then false).</summary>
    public bool TryRun(int layer, TensorPayload x, TensorPayload expertIds, TensorPayload weights, ActivityContext parent, out TensorPayload? output)
    {
        lock (_gate)
        {
            output = _closed ? null : _run(layer, x, expertIds, weights, parent);
            return !_closed;
        }
    }

    /// <summary>The in-process call (a stage on this silo): as the other, on tensors.</summary>
    public bool TryRun(int layer, TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor expertIds, TorchSharp.torch.Tensor weights, ActivityContext parent,
        out TorchSharp.torch.Tensor? output)
    {
        lock (_gate)
        {
            output = _closed ? null : _local(layer, x, expertIds, weights, parent);
            return !_closed;
        }
    }

    public void Dispose()
    {
        _plane.Unregister(this);
        lock (_gate) _closed = true;
    }
}

