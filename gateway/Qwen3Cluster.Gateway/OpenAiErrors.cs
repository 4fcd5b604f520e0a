using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>The HTTP edge's one mapping of <see cref="RequestError"/> to an HTTP status and OpenAI's error object.</summary>
public static class OpenAiErrors
{
    public static int Status(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidArgument or ErrorKind.ResourceExhausted => StatusCodes.Status400BadRequest,
        ErrorKind.Unauthenticated => StatusCodes.Status401Unauthorized,
        ErrorKind.PermissionDenied => StatusCodes.Status403Forbidden,
        ErrorKind.NotFound => StatusCodes.Status404NotFound,
        ErrorKind.FailedPrecondition => StatusCodes.Status409Conflict,
        ErrorKind.PayloadTooLarge => StatusCodes.Status413PayloadTooLarge,
        ErrorKind.UnsupportedMediaType => StatusCodes.Status415UnsupportedMediaType,
        ErrorKind.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary><c>{"error": {"message", "type", "param", "code"}}</c>, with the codes OpenAI's clients look for.</summary>
    public static JsonObject Body(RequestError error) => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = error.Message,
            ["type"] = error.Kind is ErrorKind.Unavailable or ErrorKind.Internal ? "server_error" : "invalid_request_error",
            ["param"] = error.Field,
            ["code"] = error.Kind switch
            {
                ErrorKind.Unauthenticated => "invalid_api_key",
                ErrorKind.NotFound when error.Field is "model" or "id" => "model_not_found",
                ErrorKind.NotFound => "not_found",
                _ => null,
            },
        },
    };

    public static Task Write(HttpContext http, RequestError error)
    {
        RequestMetrics.Failed(error.Kind);
        http.Response.StatusCode = Status(error.Kind);
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync(Body(error).ToJsonString());
    }
}
