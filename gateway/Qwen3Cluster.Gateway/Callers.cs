using Grpc.Core;

namespace Qwen3Cluster.Gateway;

/// <summary>Who is calling: the API key they presented, or "anonymous" when the gateway requires none.</summary>
public sealed class Callers
{
    public const string Anonymous = "anonymous";

    public string Owner(ServerCallContext context) =>
        context.GetHttpContext().Items.TryGetValue(OwnerItem, out var owner) && owner is string s ? s : Anonymous;

    public const string OwnerItem = "qwen3.owner";
}
