using System.Runtime.CompilerServices;

namespace Qwen3Cluster.Grains;

/// <summary>
/// Runs one turn of a session from outside the grains (the gateway service): begins the turn, extends the
/// session's history with the turn's new tokens, streams the generation from the session's replica resuming its
/// parked cache, and ends the turn with prompt + reply as the new history (or abandons it on failure).
/// </summary>
public sealed class SessionTurns(IGrainFactory grains)
{
    public async IAsyncEnumerable<GenerationEvent> RunAsync(string sessionId, string owner, Func<int[], int[]> promptFromHistory,
        SamplingWire sampling, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var session = grains.GetGrain<ISessionGrain>(sessionId);
        var ticket = await session.BeginTurn(owner);
        if (ticket.Status != TurnStatus.Started)
        {
            yield return Refusal(ticket.Status == TurnStatus.Busy
                ? new ErrorWire(ErrorKind.FailedPrecondition, "session_id", $"session {sessionId} is answering another turn")
                : new ErrorWire(ErrorKind.NotFound, "session_id", $"session {sessionId} does not exist"));
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
        var gateway = grains.GetGrain<IGatewayGrain>(GrainKeys.Gateway(ticket.Model, ticket.Replica));
        var reply = new List<int>();
        bool finished = false;
        try
        {
            var command = new GenerateCommand(prompt, sampling, ParkAs: ticket.CacheKey, ResumeFrom: ticket.CacheKey);
            await foreach (var update in gateway.Generate(command, cancellationToken).WithCancellation(cancellationToken))
            {
                reply.AddRange(update.Tokens.Select(t => t.Id));
                finished = update.FinishReason is not null;
                yield return update;
            }
        }
        finally
        {
            if (finished) await session.EndTurn(ticket.Turn, [.. prompt, .. reply]);
            else await session.AbandonTurn(ticket.Turn);
        }
    }

    static GenerationEvent Refusal(ErrorWire error) => new([], "", null, null, error);
}
