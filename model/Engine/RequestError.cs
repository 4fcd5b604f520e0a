namespace Qwen3Cluster.Model.Engine;

/// <summary>What went wrong with a request, in terms each protocol maps to its own status at its edge.</summary>
public enum ErrorKind
{
    InvalidArgument,
    NotFound,
    Unauthenticated,
    PermissionDenied,
    /// <summary>The request is valid but cannot run in the current state (a session busy with another turn).</summary>
    FailedPrecondition,
    /// <summary>The request can never fit (a prompt larger than the KV pool).</summary>
    ResourceExhausted,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// <summary>The cluster cannot serve it right now (a grain that no silo can host, a generation that failed).</summary>
    Unavailable,
    Internal,
}

/// <summary>
/// A request refused or failed: its kind, the request field at fault (null when no one field is) and why. The one
/// error type of every edge: gRPC and the OpenAI-style HTTP API turn it into their own status only where they answer.
/// </summary>
public sealed class RequestError(ErrorKind kind, string? field, string reason)
    : Exception(field is { Length: > 0 } ? $"{field}: {reason}" : reason)
{
    public ErrorKind Kind { get; } = kind;
    public string? Field { get; } = field;
    public string Reason { get; } = reason;

    public static RequestError Invalid(string field, string reason) => new(ErrorKind.InvalidArgument, field, reason);

    public static RequestError NotFound(string field, string reason) => new(ErrorKind.NotFound, field, reason);

    /// <summary>The same error about a field under another name (a protocol's own spelling of a shared field).</summary>
    public RequestError For(string field) => new(Kind, field, Reason);
}
