using Grpc.Core;
using Qwen3Cluster.Grains;

namespace Qwen3Cluster.Gateway;

/// <summary>Errors as gRPC statuses whose message names the field at fault.</summary>
public static class ApiErrors
{
    public static RpcException Invalid(string field, string reason) => new(new Status(StatusCode.InvalidArgument, $"{field}: {reason}"));

    public static RpcException NotFound(string field, string reason) => new(new Status(StatusCode.NotFound, $"{field}: {reason}"));

    public static RpcException From(ErrorWire error) => new(new Status(Code(error.Kind),
        error.Field is { Length: > 0 } field ? $"{field}: {error.Message}" : error.Message));

    public static StatusCode Code(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidArgument => StatusCode.InvalidArgument,
        ErrorKind.NotFound => StatusCode.NotFound,
        ErrorKind.PermissionDenied => StatusCode.PermissionDenied,
        ErrorKind.FailedPrecondition => StatusCode.FailedPrecondition,
        ErrorKind.ResourceExhausted => StatusCode.ResourceExhausted,
        ErrorKind.Unavailable => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    };
}
