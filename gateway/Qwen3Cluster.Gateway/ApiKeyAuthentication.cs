using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

public sealed class ApiKeyAuthenticationOptions : AuthenticationSchemeOptions
{
    /// <summary>Keys clients may present; none means every caller is <see cref="Caller.Anonymous"/>.</summary>
    public IReadOnlySet<string> Keys { get; set; } = new HashSet<string>();
}

/// <summary>
/// ASP.NET Core authentication by API key (<c>Authorization: Bearer KEY</c>), for the gRPC services and the HTTP API
/// alike. A caller is the key it presents, remembered only as a hash so sessions never store the key. A refusal is
/// answered in the protocol of the endpoint that was called: UNAUTHENTICATED for gRPC, OpenAI's error object for HTTP.
/// </summary>
public sealed class ApiKeyAuthentication(IOptionsMonitor<ApiKeyAuthenticationOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<ApiKeyAuthenticationOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    const string Bearer = "Bearer ";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        if (Options.Keys.Count == 0) return Task.FromResult(Success(Caller.Anonymous));
        string header = Request.Headers.Authorization.ToString();
        if (!header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase)) return Task.FromResult(AuthenticateResult.NoResult());
        string key = header[Bearer.Length..].Trim();
        return Task.FromResult(Options.Keys.Contains(key)
            ? Success("key:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16])
            : AuthenticateResult.Fail("not a configured API key"));
    }

    AuthenticateResult Success(string owner)
    {
        var identity = new ClaimsIdentity([new Claim(ClaimTypes.NameIdentifier, owner)], SchemeName);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        // A gRPC method is recognised by the endpoint routing matched, not by a header the client chooses.
        if (Context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>() is not null)
        {
            Response.StatusCode = StatusCodes.Status200OK;
            Response.ContentType = "application/grpc";
            Response.Headers["grpc-status"] = ((int)Grpc.Core.StatusCode.Unauthenticated).ToString();
            Response.Headers["grpc-message"] = Uri.EscapeDataString("authorization: a valid API key is required (metadata 'authorization: Bearer KEY')");
            return Task.CompletedTask;
        }
        return OpenAiErrors.Write(Context, new RequestError(ErrorKind.Unauthenticated, null,
            "Incorrect or missing API key: send 'Authorization: Bearer KEY'."));
    }
}

/// <summary>Who is calling: the owner of the sessions a caller creates.</summary>
public static class Caller
{
    public const string Anonymous = "anonymous";

    public static string Owner(ClaimsPrincipal user) => user.FindFirstValue(ClaimTypes.NameIdentifier) ?? Anonymous;
}
