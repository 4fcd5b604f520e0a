using Microsoft.AspNetCore.Http;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// Requires an API key on the OpenAI-style HTTP API and the dashboard when keys are configured; health and metrics
/// stay open, and gRPC calls are checked by <see cref="ApiKeyInterceptor"/>.
/// </summary>
public sealed class HttpApiKeys(RequestDelegate next, Callers callers)
{
    public Task InvokeAsync(HttpContext http)
    {
        string path = http.Request.Path.Value ?? "";
        // gRPC methods are recognised by the endpoint routing matched (not by a header the client chooses);
        // ApiKeyInterceptor checks those.
        bool grpc = http.GetEndpoint()?.Metadata.GetMetadata<Grpc.AspNetCore.Server.GrpcMethodMetadata>() is not null;
        bool open = grpc || path is "/healthz" or "/metrics";
        if (open || callers.Authenticate(http) is not null) return next(http);
        return OpenAiErrors.Write(http, StatusCodes.Status401Unauthorized, "invalid_request_error",
            "Incorrect or missing API key: send 'Authorization: Bearer KEY'.", param: null, code: "invalid_api_key");
    }
}
