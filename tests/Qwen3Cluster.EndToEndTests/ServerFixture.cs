using Grpc.Core;
using Grpc.Net.Client;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>One embedded-default server (qwen3 serve) with two API keys, shared by a test class.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string KeyA = "test-key-a";
    public const string KeyB = "test-key-b";
    public ServerProcess Server { get; private set; } = null!;
    public string Model { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Model = await TestModels.GetAsync("tiny-moe");
        Server = ServerProcess.Start(Model, new Dictionary<string, string>
        {
            ["Qwen3:Gateway:ApiKeys:0"] = KeyA,
            ["Qwen3:Gateway:ApiKeys:1"] = KeyB,
        });
        await Server.WaitUntilServingAsync();
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();

    /// <summary>A gRPC channel to the server that presents <paramref name="key"/> on every call.</summary>
    public GrpcChannel Channel(string key = KeyA) => GrpcChannel.ForAddress(Server.GrpcAddress, new GrpcChannelOptions
    {
        Credentials = ChannelCredentials.Create(ChannelCredentials.Insecure, CallCredentials.FromInterceptor((_, metadata) =>
        {
            metadata.Add("authorization", $"Bearer {key}");
            return Task.CompletedTask;
        })),
        UnsafeUseInsecureChannelCallCredentials = true,
    });
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "embedded server";
}
