using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Qwen3Cluster.Grains.DataPlane;

/// <summary>
/// The experts' data plane's frames, little-endian, each a 4-byte body length and the body. A request: kind (1: run),
/// the number of calls, and per call the group's grain key, the layer, the caller's W3C trace parent ("" when not
/// traced), then x, expert ids and weights: one frame carries a step's calls to every group of one silo for one
/// layer. A response: per call a status (<see cref="Ok"/> and the output; <see cref="Gone"/>: the group is not
/// hosted there (moved, unloaded); <see cref="Failed"/>: the call failed) and, unless Ok, a message. A tensor: dtype
/// name, rank, the dimensions (int64 each), the byte count (int64) and the bytes.
/// </summary>
static class ExpertWire
{
    public const byte Run = 1;
    public const byte Ok = 0;
    public const byte Gone = 1;
    public const byte Failed = 2;

    /// <summary>The largest frame either side accepts: as large as an Orleans message body may be here.</summary>
    public const int MaxFrameBytes = 512 * 1024 * 1024;
    /// <summary>The most calls one frame carries (a silo's groups for one layer: far fewer).</summary>
    const int MaxCalls = 4096;

    public sealed record Call(string Key, int Layer, string TraceParent, TensorPayload X, TensorPayload ExpertIds, TensorPayload Weights);

    /// <summary>One call's answer: its output, or the status that stopped it and why.</summary>
    public sealed record Reply(byte Status, TensorPayload? Output, string? Message);

    /// <summary>A frame in a buffer rented from the shared pool: <see cref="Return"/> it once sent.</summary>
    public readonly record struct Frame(byte[] Buffer, int Length)
    {
        public void Return() => ArrayPool<byte>.Shared.Return(Buffer);
    }

    public static Frame WriteRequest(IReadOnlyList<Call> calls)
    {
        long size = 4 + 1 + 4;
        foreach (var call in calls)
            size += StringSize(call.Key) + 4 + StringSize(call.TraceParent) + PayloadSize(call.X) + PayloadSize(call.ExpertIds) + PayloadSize(call.Weights);
        var writer = new Writer(size);
        writer.Byte(Run);
        writer.Int(calls.Count);
        foreach (var call in calls)
        {
            writer.String(call.Key);
            writer.Int(call.Layer);
            writer.String(call.TraceParent);
            writer.Payload(call.X);
            writer.Payload(call.ExpertIds);
            writer.Payload(call.Weights);
        }
        return writer.Finish();
    }

    public static Call[] ReadRequest(ReadOnlySpan<byte> body)
    {
        var reader = new Reader(body);
        byte kind = reader.Byte();
        if (kind != Run) throw new InvalidDataException($"Unknown expert data-plane request kind {kind}.");
        var calls = new Call[reader.Count(MaxCalls)];
        for (int i = 0; i < calls.Length; i++)
            calls[i] = new Call(reader.String(), reader.Int(), reader.String(), reader.Payload(), reader.Payload(), reader.Payload());
        reader.End();
        return calls;
    }

    public static Frame WriteResponse(IReadOnlyList<Reply> replies)
    {
        long size = 4 + 4;
        foreach (var reply in replies) size += 1 + (reply.Output is { } output ? PayloadSize(output) : StringSize(reply.Message ?? ""));
        var writer = new Writer(size);
        writer.Int(replies.Count);
        foreach (var reply in replies)
        {
            writer.Byte(reply.Status);
            if (reply.Output is { } output) writer.Payload(output);
            else writer.String(reply.Message ?? "");
        }
        return writer.Finish();
    }

    public static Reply[] ReadResponse(ReadOnlySpan<byte> body)
    {
        var reader = new Reader(body);
        var replies = new Reply[reader.Count(MaxCalls)];
        for (int i = 0; i < replies.Length; i++)
        {
            byte status = reader.Byte();
            replies[i] = status switch
            {
                Ok => new Reply(status, reader.Payload(), null),
                Gone or Failed => new Reply(status, null, reader.String()),
                _ => throw new InvalidDataException($"Unknown expert data-plane reply status {status}."),
            };
        }
        reader.End();
        return replies;
    }

    public static void Send(Socket socket, Frame frame)
    {
        var data = frame.Buffer.AsSpan(0, frame.Length);
        while (data.Length > 0) data = data[socket.Send(data)..];
    }

    /// <summary>The next frame's body, in a rented buffer (return it to the shared pool); null when the peer closed before one began.</summary>
    public static Frame? Receive(Socket socket)
    {
        Span<byte> header = stackalloc byte[4];
        int first = socket.Receive(header);
        if (first == 0) return null;
        ReceiveExactly(socket, header[first..]);
        int length = BinaryPrimitives.ReadInt32LittleEndian(header);
        if (length < 1 || length > MaxFrameBytes)
            throw new InvalidDataException($"Expert data-plane frame of {length} bytes (at most {MaxFrameBytes}).");
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            ReceiveExactly(socket, buffer.AsSpan(0, length));
            return new Frame(buffer, length);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }

    /// <summary>As <see cref="Receive"/>, without holding a thread while the frame is on its way.</summary>
    public static async ValueTask<Frame?> ReceiveAsync(Socket socket, CancellationToken cancellationToken)
    {
        var header = new byte[4];
        int first = await socket.ReceiveAsync(header, SocketFlags.None, cancellationToken);
        if (first == 0) return null;
        await ReceiveExactlyAsync(socket, header.AsMemory(first), cancellationToken);
        int length = BinaryPrimitives.ReadInt32LittleEndian(header);
        if (length < 1 || length > MaxFrameBytes)
            throw new InvalidDataException($"Expert data-plane frame of {length} bytes (at most {MaxFrameBytes}).");
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            await ReceiveExactlyAsync(socket, buffer.AsMemory(0, length), cancellationToken);
            return new Frame(buffer, length);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }

    static async ValueTask ReceiveExactlyAsync(Socket socket, Memory<byte> data, CancellationToken cancellationToken)
    {
        while (data.Length > 0)
        {
            int n = await socket.ReceiveAsync(data, SocketFlags.None, cancellationToken);
            if (n == 0) throw new EndOfStreamException("The expert data-plane peer closed the connection within a frame.");
            data = data[n..];
        }
    }

    static void ReceiveExactly(Socket socket, Span<byte> data)
    {
        while (data.Length > 0)
        {
            int n = socket.Receive(data);
            if (n == 0) throw new EndOfStreamException("The expert data-plane peer closed the connection within a frame.");
            data = data[n..];
        }
    }

    static long StringSize(string value) => 4 + Encoding.UTF8.GetByteCount(value);

    static long PayloadSize(TensorPayload payload) => StringSize(payload.DType) + 4 + 8 * payload.Shape.Length + 8 + payload.Data.Length;

    ref struct Writer
    {
        readonly byte[] _buffer;
        int _at;

        public Writer(long size)
        {
            if (size > MaxFrameBytes) throw new InvalidOperationException($"An expert data-plane frame of {size} bytes is over {MaxFrameBytes}.");
            _buffer = ArrayPool<byte>.Shared.Rent((int)size);
            _at = 4;
        }

        public void Byte(byte value) => _buffer[_at++] = value;

        public void Int(int value)
        {
            BinaryPrimitives.WriteInt32LittleEndian(_buffer.AsSpan(_at), value);
            _at += 4;
        }

        void Long(long value)
        {
            BinaryPrimitives.WriteInt64LittleEndian(_buffer.AsSpan(_at), value);
            _at += 8;
        }

        public void String(string value)
        {
            int n = Encoding.UTF8.GetBytes(value, _buffer.AsSpan(_at + 4));
            Int(n);
            _at += n;
        }

        public void Payload(TensorPayload payload)
        {
            String(payload.DType);
            Int(payload.Shape.Length);
            foreach (long dim in payload.Shape) Long(dim);
            Long(payload.Data.Length);
            payload.Data.CopyTo(_buffer.AsSpan(_at));
            _at += payload.Data.Length;
        }

        public Frame Finish()
        {
            BinaryPrimitives.WriteInt32LittleEndian(_buffer, _at - 4);
            return new Frame(_buffer, _at);
        }
    }

    ref struct Reader(ReadOnlySpan<byte> body)
    {
        readonly ReadOnlySpan<byte> _body = body;
        int _at;

        ReadOnlySpan<byte> Take(long count)
        {
            if (count < 0 || count > _body.Length - _at)
                throw new InvalidDataException($"Expert data-plane frame ends early: {count} bytes wanted at {_at} of {_body.Length}.");
            var span = _body.Slice(_at, (int)count);
            _at += (int)count;
            return span;
        }

        public byte Byte() => Take(1)[0];

        public int Int() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

        public int Count(int max)
        {
            int count = Int();
            if (count < 1 || count > max) throw new InvalidDataException($"Expert data-plane frame with {count} calls (1 to {max}).");
            return count;
        }

        long Long() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

        public string String() => Encoding.UTF8.GetString(Take(Int()));

        public TensorPayload Payload()
        {
            string dtype = String();
            int rank = Int();
            if (rank < 0 || rank > 8) throw new InvalidDataException($"Expert data-plane tensor of rank {rank}.");
            var shape = new long[rank];
            for (int i = 0; i < rank; i++) shape[i] = Long();
            return new TensorPayload(dtype, shape, Take(Long()).ToArray());
        }

        public void End()
        {
            if (_at != _body.Length) throw new InvalidDataException($"Expert data-plane frame has {_body.Length - _at} bytes left over.");
        }
    }
}
