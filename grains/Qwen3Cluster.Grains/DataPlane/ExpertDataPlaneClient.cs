using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Qwen3Cluster.Grains.DataPlane;

/// <summary>The group could not be reached over the data plane (gone from that silo, or the connection failed): call it through its grain.</summary>
public sealed class ExpertDataPlaneUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A stage silo's side of the experts' data plane: connections to the expert silos' <see cref="ExpertDataPlane"/>,
/// kept open and reused, one frame in flight on each. A stage gathers a layer's calls in an <see cref="ExpertCallBatch"/>
/// (one frame per silo) and awaits each reply without holding a thread (the stage's silo has other work: a stage
/// blocking on the socket held one of its pool threads for most of every step). A silo that membership declares dead
/// has its connections closed, so a call waiting on it fails at once, as Orleans fails the grain calls to it.
/// </summary>
public sealed partial class ExpertDataPlaneClient(IClusterMembershipService membership, ILogger<ExpertDataPlaneClient> logger) : IDisposable
{
    static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    /// <summary>As long as the grain call's own response timeout (<c>IExpertGroupGrain.Run</c>): the backstop when no silo is declared dead.</summary>
    static readonly TimeSpan ResponseTimeout = TimeSpan.FromMinutes(30);

    readonly ConcurrentDictionary<ExpertEndpoint, ConcurrentBag<Connection>> _idle = new();
    readonly ConcurrentDictionary<Connection, byte> _open = new();
    readonly CancellationTokenSource _stopping = new();
    int _watching;

    internal sealed class Connection(Socket socket, ExpertEndpoint endpoint) : IDisposable
    {
        public Socket Socket { get; } = socket;
        public ExpertEndpoint Endpoint { get; } = endpoint;
        public override string ToString() => $"{Endpoint.Host}:{Endpoint.Port}";
        public void Dispose() => Socket.Dispose();
    }

    /// <summary>Sends one frame of calls to <paramref name="endpoint"/>, on a free connection there or a new one.</summary>
    internal async ValueTask<Connection> SendAsync(ExpertEndpoint endpoint, IReadOnlyList<ExpertWire.Call> calls, CancellationToken cancellationToken)
    {
        Watch();
        var frame = ExpertWire.WriteRequest(calls);
        try
        {
            var connection = _idle.TryGetValue(endpoint, out var idle) && idle.TryTake(out var free) ? free
                : await ConnectAsync(endpoint, cancellationToken);
            try
            {
                ExpertWire.Send(connection.Socket, frame);
                return connection;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                Close(connection);
                throw new ExpertDataPlaneUnavailableException($"Sending to the expert data plane at {connection} failed: {e.Message}", e);
            }
        }
        finally
        {
            frame.Return();
        }
    }

    /// <summary>The reply to the frame sent on <paramref name="connection"/>; the connection is free again after.</summary>
    internal async ValueTask<ExpertWire.Reply[]> ReceiveAsync(Connection connection, int calls, CancellationToken cancellationToken)
    {
        ExpertWire.Frame? frame;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token))
        {
            timeout.CancelAfter(ResponseTimeout);
            try
            {
                frame = await ExpertWire.ReceiveAsync(connection.Socket, timeout.Token);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException or InvalidDataException
                                          or OperationCanceledException)
            {
                Close(connection);
                cancellationToken.ThrowIfCancellationRequested();
                throw new ExpertDataPlaneUnavailableException($"No answer from the expert data plane at {connection}: {e.Message}", e);
            }
        }
        if (frame is not { } body)
        {
            Close(connection);
            throw new ExpertDataPlaneUnavailableException($"The expert data plane at {connection} closed the connection.");
        }
        ExpertWire.Reply[] replies;
        try
        {
            replies = ExpertWire.ReadResponse(body.Buffer.AsSpan(0, body.Length));
            if (replies.Length != calls) throw new InvalidDataException($"{replies.Length} replies to {calls} calls.");
        }
        catch (InvalidDataException e)
        {
            Close(connection);
            throw new ExpertDataPlaneUnavailableException($"A bad response from the expert data plane at {connection}: {e.Message}", e);
        }
        finally
        {
            body.Return();
        }
        _idle.GetOrAdd(connection.Endpoint, _ => []).Add(connection);
        return replies;
    }

    async ValueTask<Connection> ConnectAsync(ExpertEndpoint endpoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        timeout.CancelAfter(ConnectTimeout);
        try
        {
            await socket.ConnectAsync(IPAddress.Parse(endpoint.Host), endpoint.Port, timeout.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            throw new ExpertDataPlaneUnavailableException($"Cannot connect to the expert data plane at {endpoint.Host}:{endpoint.Port}: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var connection = new Connection(socket, endpoint);
        _open[connection] = 0;
        LogConnected(endpoint.Host, endpoint.Port);
        return connection;
    }

    void Close(Connection connection)
    {
        _open.TryRemove(connection, out _);
        connection.Dispose();
    }

    /// <summary>Closes the connections to every silo membership declares dead, from the first call on.</summary>
    void Watch()
    {
        if (Interlocked.Exchange(ref _watching, 1) == 1) return;
        _ = Task.Run(async () =>
        {
            try
            {
                await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(_stopping.Token))
                {
                    var dead = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Dead)
                        .Select(m => m.SiloAddress.ToParsableString()).ToHashSet();
                    foreach (var endpoint in _idle.Keys.Where(e => dead.Contains(e.Silo))) _idle.TryRemove(endpoint, out _);
                    foreach (var connection in _open.Keys.Where(c => dead.Contains(c.Endpoint.Silo)))
                    {
                        LogDeadSilo(connection.Endpoint.Silo);
                        Close(connection);
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
    }

    public void Dispose()
    {
        _stopping.Cancel();
        foreach (var connection in _open.Keys) Close(connection);
        _idle.Clear();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Expert data plane: connected to {Host}:{Port}")]
    partial void LogConnected(string host, int port);

    [LoggerMessage(Level = LogLevel.Information, Message = "Expert data plane: silo {Silo} is dead, its connections closed")]
    partial void LogDeadSilo(string silo);
}

/// <summary>
/// One dispatch's data-plane calls from a stage: added while the step's group calls start, sent as one frame per
/// silo once the first output is asked for (<see cref="SendAsync"/>: a silo then wakes once and runs its groups
/// one after another, instead of one thread per call competing for its cores), each silo's reply read once, by
/// whichever of its calls asks first. Used by one stage activation at a time.
/// </summary>
public sealed class ExpertCallBatch(ExpertDataPlaneClient client)
{
    readonly Dictionary<ExpertEndpoint, SiloCalls> _unsent = [];

    /// <summary>One silo's calls of the dispatch, and once sent, their connection and replies.</summary>
    internal sealed class SiloCalls(ExpertEndpoint endpoint)
    {
        public readonly ExpertEndpoint Endpoint = endpoint;
        public readonly List<ExpertWire.Call> Calls = [];
        public ExpertDataPlaneClient.Connection? Connection;
        public ExpertWire.Reply[]? Replies;
        public ExpertDataPlaneUnavailableException? Error;
    }

    /// <summary>A call in a batch: <see cref="OutputAsync"/> waits for its silo's reply.</summary>
    public sealed class Handle
    {
        readonly ExpertDataPlaneClient _client;
        readonly SiloCalls _silo;
        readonly int _index;

        internal Handle(ExpertDataPlaneClient client, SiloCalls silo, int index)
        {
            _client = client;
            _silo = silo;
            _index = index;
        }

        /// <summary>The call's output; <see cref="ExpertDataPlaneUnavailableException"/> when it must go through its grain instead.</summary>
        public async ValueTask<TensorPayload> OutputAsync(CancellationToken cancellationToken)
        {
            if (_silo.Replies is null && _silo.Error is null)
            {
                if (_silo.Connection is not { } connection)
                    throw new InvalidOperationException("An expert call's output was asked for before its batch was sent.");
                try
                {
                    _silo.Replies = await _client.ReceiveAsync(connection, _silo.Calls.Count, cancellationToken);
                }
                catch (ExpertDataPlaneUnavailableException e)
                {
                    _silo.Error = e;
                }
            }
            if (_silo.Error is { } error) throw error;
            var reply = _silo.Replies![_index];
            return reply.Status switch
            {
                ExpertWire.Ok => reply.Output!,
                ExpertWire.Gone => throw new ExpertDataPlaneUnavailableException(reply.Message!),
                _ => throw new InvalidOperationException(reply.Message),
            };
        }
    }

    public Handle Add(ExpertEndpoint endpoint, string key, int layer, TensorPayload x, TensorPayload expertIds, TensorPayload weights, string traceParent)
    {
        if (!_unsent.TryGetValue(endpoint, out var silo)) _unsent[endpoint] = silo = new SiloCalls(endpoint);
        silo.Calls.Add(new ExpertWire.Call(key, layer, traceParent, x, expertIds, weights));
        return new Handle(client, silo, silo.Calls.Count - 1);
    }

    /// <summary>Sends every silo's calls added since the last send; a silo that cannot be reached fails its calls over to their grains.</summary>
    public async ValueTask SendAsync(CancellationToken cancellationToken)
    {
        if (_unsent.Count == 0) return;
        var silos = _unsent.Values.ToArray();
        _unsent.Clear();
        for (int i = 0; i < silos.Length; i++)
        {
            try
            {
                silos[i].Connection = await client.SendAsync(silos[i].Endpoint, silos[i].Calls, cancellationToken);
            }
            catch (ExpertDataPlaneUnavailableException e)
            {
                silos[i].Error = e;
            }
            catch (Exception e)
            {
                // Cancelled while connecting: this silo's calls and those not sent yet are not under way.
                for (int j = i; j < silos.Length; j++) silos[j].Error = new ExpertDataPlaneUnavailableException($"Not sent: {e.Message}", e);
                throw;
            }
        }
    }
}
