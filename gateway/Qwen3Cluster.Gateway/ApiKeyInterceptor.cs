using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Qwen3Cluster.Gateway;

/// <summary>Refuses gRPC calls without a valid API key (when keys are configured) with UNAUTHENTICATED.</summary>
public sealed class ApiKeyInterceptor(Callers callers) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    void Check(ServerCallContext context)
    {
        if (!context.Method.StartsWith("/qwen3cluster.", StringComparison.Ordinal)) return;
        if (callers.Authenticate(context.GetHttpContext()) is null)
            throw new RpcException(new Status(StatusCode.Unauthenticated, "authorization: a valid API key is required (metadata 'authorization: Bearer KEY')"));
    }
}
