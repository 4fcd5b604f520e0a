using Qwen3Cluster.Model.Constraints;
using System.Runtime.CompilerServices;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Grains;

/// <summary>
/// Runs one turn of a session from outside the grains (the gateway service): begins the turn, extends the
/// session's history with the turn's new tokens, streams the generation from the session's replica resuming its
/// parked cache, and ends the turn with prompt + reply as the new history (or abandons it on failure).
/// </summary>
public sealed class SessionTurns(IGrainFactory grains)
{
    /// <param name="promptFromHistory">The turn's prompt, given the session's history; it checks what it builds (<see cref="RequestLimits"/>).</param>
    public async IAsyncEnumerable<GenerationUpdate> RunAsync(string sessionId, string owner, Func<int[], int[]> promptFromHistory,
        SamplingParams sampling, [EnumeratorCancellation] CancellationToken cancellationToken = default, OutputConstraint? constraint = null)
    {
        var session = grains.GetGrain<ISessionGrain>(sessionId);
        var ticket = await session.BeginTurn(owner);
        if (ticket.Status != TurnStatus.Started)
        {
            yield return GenerationUpdate.Failed(ticket.Status == TurnStatus.Busy
                ? new RequestError(ErrorKind.FailedPrecondition, "session_id", $"session {sessionId} is answering another turn")
                : RequestError.NotFound("session_id", $"session {sessionId} does not exist"));
            yield break;
        }
        int[] prompt;
        try
        {
            prompt = promptFromHistory(ticket.History);
        }
        catch
        {
            await session.AbandonTurn(ticket.Turn);
            throw;
        }
        var replica = grains.GetReplica(new ReplicaKey(ticket.Model, ticket.Replica));
        var reply = new List<int>();
        bool finished = false;
        try
        {
            var request = new GenerationRequest(prompt, sampling) { ParkAs = ticket.CacheKey, ResumeFrom = ticket.CacheKey, Constraint = constraint };
            await foreach (var update in replica.Generate(request, cancellationToken).WithCancellation(cancellationToken))
            {
                reply.AddRange(update.Tokens.Select(t => t.Id));
                finished = update.IsFinal;
                yield return update;
            }
        }
        finally
        {
            if (finished) await session.EndTurn(ticket.Turn, [.. prompt, .. reply]);
            else await session.AbandonTurn(ticket.Turn);
        }
    }
}
