using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Qwen3Cluster.Grains;

namespace Qwen3Cluster.Gateway;

/// <summary>A request the OpenAI-style API refuses: HTTP status and OpenAI's error object.</summary>
public sealed class OpenAiException(int status, string type, string message, string? param, string? code = null) : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public static OpenAiException Invalid(string param, string message) =>
        new(StatusCodes.Status400BadRequest, "invalid_request_error", $"{param}: {message}", param);

    public static OpenAiException From(ErrorWire error) => error.Kind switch
    {
        ErrorKind.NotFound => new(StatusCodes.Status404NotFound, "invalid_request_error", Describe(error), error.Field, "not_found"),
        ErrorKind.PermissionDenied => new(StatusCodes.Status403Forbidden, "invalid_request_error", Describe(error), error.Field),
        ErrorKind.FailedPrecondition => new(StatusCodes.Status409Conflict, "invalid_request_error", Describe(error), error.Field),
        ErrorKind.InvalidArgument or ErrorKind.ResourceExhausted => new(StatusCodes.Status400BadRequest, "invalid_request_error", Describe(error), error.Field),
        ErrorKind.Unavailable => new(StatusCodes.Status503ServiceUnavailable, "server_error", Describe(error), error.Field),
        _ => new(StatusCodes.Status500InternalServerError, "server_error", Describe(error), error.Field),
    };

    static string Describe(ErrorWire e) => e.Field is { Length: > 0 } f ? $"{f}: {e.Message}" : e.Message;
}

public static class OpenAiErrors
{
    public static Task Write(HttpContext http, int status, string type, string message, string? param, string? code = null)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync(JsonSerializer.Serialize(new
        {
            error = new { message, type, param, code },
        }));
    }

    public static Task Write(HttpContext http, OpenAiException e) => Write(http, e.Status, e.Type, e.Message, e.Param, e.Code);
}
