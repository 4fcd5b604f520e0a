namespace Qwen3Cluster.Gateway;

/// <summary>The client-facing endpoints of a gateway silo (configuration section <c>Qwen3:Gateway</c>).</summary>
public sealed record GatewayOptions
{
    public int GrpcPort { get; set; } = 50051;
    /// <summary>OpenAI-compatible HTTP; 0 turns it off.</summary>
    public int HttpPort { get; set; } = 8000;
    /// <summary>Listen on every address rather than loopback only.</summary>
    public bool ListenOnAnyAddress { get; set; }
}
