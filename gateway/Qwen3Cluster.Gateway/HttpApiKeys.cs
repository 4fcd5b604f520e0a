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
        bool open = path is "/healthz" or "/metrics" || http.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true;
        if (open || callers.Authenticate(http) is not null) return next(http);
        return OpenAiErrors.Write(http, StatusCodes.Status401Unauthorized, "invalid_request_error",
            "Incorrect or missing API key: send 'Authorization: Bearer KEY'.", param: null, code: "invalid_api_key");
    }
}
