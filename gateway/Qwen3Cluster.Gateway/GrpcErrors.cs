using Grpc.Core;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The gRPC edge's one mapping of <see cref="RequestError"/> to a status whose message names the field
/// ("field: reason"), applied to every call the services make by <see cref="Interceptor"/>; a failure of the cluster
/// itself (a silo unreachable, a role missing) is UNAVAILABLE (<see cref="ClusterFaults"/>).
/// </summary>
public static class GrpcErrors
{
    public static RpcException ToRpc(RequestError error) => new(new Status(Code(error.Kind), error.Message));

    public static StatusCode Code(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidArgument or ErrorKind.UnsupportedMediaType => StatusCode.InvalidArgument,
        ErrorKind.NotFound => StatusCode.NotFound,
        ErrorKind.Unauthenticated => StatusCode.Unauthenticated,
        ErrorKind.PermissionDenied => StatusCode.PermissionDenied,
        ErrorKind.FailedPrecondition => StatusCode.FailedPrecondition,
        ErrorKind.ResourceExhausted or ErrorKind.PayloadTooLarge => StatusCode.ResourceExhausted,
        ErrorKind.Unavailable => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    };

    /// <summary>Turns a <see cref="RequestError"/> thrown by a service method into its status.</summary>
    public sealed class Interceptor : Grpc.Core.Interceptors.Interceptor
    {
        public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
            UnaryServerMethod<TRequest, TResponse> continuation)
        {
            try
            {
                return await continuation(request, context);
            }
            catch (Exception e) when (ClusterFaults.AsRequestError(e) is { } error)
            {
                RequestMetrics.Failed(error.Kind);
                throw ToRpc(error);
            }
        }

        public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
            ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
        {
            try
            {
                await continuation(request, responseStream, context);
            }
            catch (Exception e) when (ClusterFaults.AsRequestError(e) is { } error)
            {
                RequestMetrics.Failed(error.Kind);
                throw ToRpc(error);
            }
        }
    }
}
