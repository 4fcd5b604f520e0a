using Grpc.Core;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>The Sessions gRPC service. A session belongs to the caller that created it: to anyone else it does not exist.</summary>
public sealed class SessionsService(ServedModel model, IGrainFactory grains) : Sessions.SessionsBase
{
    public static readonly int MaxTtlSeconds = (int)SessionStorage.MaxTtl.TotalSeconds;

    public override async Task<Session> CreateSession(CreateSessionRequest request, ServerCallContext context)
    {
        model.Check(request.Model);
        if (request.TtlSeconds < 0 || request.TtlSeconds > MaxTtlSeconds)
            throw RequestError.Invalid("ttl_seconds", $"must be between 0 (server default) and {MaxTtlSeconds}");
        string id = Guid.NewGuid().ToString("N");
        var info = await grains.GetGrain<ISessionGrain>(id).Create(Owner(context), model.Name, request.TtlSeconds);
        return ToProto(info);
    }

    public override async Task<Session> GetSession(GetSessionRequest request, ServerCallContext context)
    {
        var info = await Grain(request.SessionId).Get(Owner(context));
        return info is null ? throw Missing(request.SessionId) : ToProto(info);
    }

    public override async Task<DeleteSessionResponse> DeleteSession(DeleteSessionRequest request, ServerCallContext context)
    {
        if (!await Grain(request.SessionId).Delete(Owner(context))) throw Missing(request.SessionId);
        return new DeleteSessionResponse();
    }

    ISessionGrain Grain(string id)
    {
        CheckId(id);
        return grains.GetGrain<ISessionGrain>(id);
    }

    static string Owner(ServerCallContext context) => Caller.Owner(context.GetHttpContext().User);

    /// <summary>Session ids are what CreateSession hands out: 1 to 128 letters, digits, '-' or '_'.</summary>
    public static void CheckId(string id)
    {
        if (id.Length is 0 or > 128 || !id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            throw RequestError.Invalid("session_id", "must be 1 to 128 letters, digits, '-' or '_'");
    }

    static RequestError Missing(string id) => RequestError.NotFound("session_id", $"session {id} does not exist");

    static Session ToProto(SessionInfo info) => new()
    {
        SessionId = info.SessionId,
        Model = info.Model,
        HistoryTokens = info.HistoryTokens,
        Turns = info.Turns,
        TtlSeconds = info.TtlSeconds,
        ExpiresAt = info.ExpiresAt.ToUnixTimeSeconds(),
    };
}
