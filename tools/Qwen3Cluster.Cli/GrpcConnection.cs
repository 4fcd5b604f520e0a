using Grpc.Core;
using Grpc.Net.Client;

namespace Qwen3Cluster.Cli;

/// <summary>A gRPC channel to a gateway, with the API key (if any) sent on every call.</summary>
public static class GrpcConnection
{
    public static GrpcChannel Open(string endpoint, string? apiKey)
    {
        var options = new GrpcChannelOptions { MaxReceiveMessageSize = 64 * 1024 * 1024 };
        if (apiKey is { Length: > 0 })
        {
            var credentials = CallCredentials.FromInterceptor((_, metadata) =>
            {
                metadata.Add("authorization", $"Bearer {apiKey}");
                return Task.CompletedTask;
            });
            options.Credentials = endpoint.StartsWith("https", StringComparison.OrdinalIgnoreCase)
                ? ChannelCredentials.Create(ChannelCredentials.SecureSsl, credentials)
                : ChannelCredentials.Create(ChannelCredentials.Insecure, credentials);
            options.UnsafeUseInsecureChannelCallCredentials = true;
        }
        return GrpcChannel.ForAddress(endpoint, options);
    }
}
