using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// Who is calling. With API keys configured, a caller is the key it presents (remembered only as a hash, so
/// sessions never store the key); without, everyone is "anonymous".
/// </summary>
public sealed class Callers(GatewayOptions options)
{
    public const string Anonymous = "anonymous";
    const string OwnerItem = "qwen3.owner";
    readonly HashSet<string> _keys = [.. options.ApiKeys.Where(k => k.Length > 0)];

    public bool RequiresKey => _keys.Count > 0;

    /// <summary>The caller of a request, or null when a key is required and the request lacks a valid one.</summary>
    public string? Authenticate(HttpContext http)
    {
        if (!RequiresKey) return Remember(http, Anonymous);
        string header = http.Request.Headers.Authorization.ToString();
        const string bearer = "Bearer ";
        if (!header.StartsWith(bearer, StringComparison.OrdinalIgnoreCase)) return null;
        string key = header[bearer.Length..].Trim();
        return _keys.Contains(key) ? Remember(http, "key:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16]) : null;
    }

    static string Remember(HttpContext http, string owner)
    {
        http.Items[OwnerItem] = owner;
        return owner;
    }

    public string Owner(HttpContext http) => http.Items.TryGetValue(OwnerItem, out var o) && o is string s ? s : Authenticate(http) ?? Anonymous;

    public string Owner(ServerCallContext context) => Owner(context.GetHttpContext());
}
