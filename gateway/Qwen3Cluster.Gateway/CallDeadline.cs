using Grpc.Core;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The cancellation of one streaming call, which also fires a little before the call's deadline. When the deadline
/// passes, gRPC resets the stream while the client's own timer aborts it, and the client can read that race as
/// UNAVAILABLE. Stopping the generation first lets the call end normally, with a DEADLINE_EXCEEDED status in its
/// trailers, and frees the KV blocks before the client stops waiting.
/// </summary>
public sealed class CallDeadline : IDisposable
{
    static readonly TimeSpan MinMargin = TimeSpan.FromMilliseconds(50);
    static readonly TimeSpan MaxMargin = TimeSpan.FromMilliseconds(250);
    readonly CancellationTokenSource _early;
    readonly CancellationTokenSource _linked;

    public CallDeadline(ServerCallContext context)
    {
        _early = new CancellationTokenSource();
        _linked = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, _early.Token);
        if (context.Deadline == DateTime.MaxValue) return;
        var remaining = context.Deadline - DateTime.UtcNow;
        // A tenth of the time left, within [50 ms, 250 ms]; a deadline too close to stop early is left to gRPC itself.
        var margin = TimeSpan.FromTicks(Math.Clamp(remaining.Ticks / 10, MinMargin.Ticks, MaxMargin.Ticks));
        if (remaining > 2 * margin) _early.CancelAfter(remaining - margin);
    }

    /// <summary>Cancelled when the client goes away or the deadline is about to pass.</summary>
    public CancellationToken Token => _linked.Token;

    public bool Reached => _early.IsCancellationRequested;

    public static RpcException Exceeded() => new(new Status(StatusCode.DeadlineExceeded, "deadline: exceeded; the generation was stopped"));

    public void Dispose()
    {
        _linked.Dispose();
        _early.Dispose();
    }
}
