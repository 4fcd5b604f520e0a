namespace Qwen3Cluster.Gateway;

/// <summary>The client-facing endpoints of a gateway silo (configuration section <c>Qwen3:Gateway</c>).</summary>
public sealed record GatewayOptions
{
    public int GrpcPort { get; set; } = 50051;
    /// <summary>OpenAI-compatible HTTP; 0 turns it off.</summary>
    public int HttpPort { get; set; } = 8000;
    /// <summary>Listen on every address rather than loopback only.</summary>
    public bool ListenOnAnyAddress { get; set; }
    /// <summary>Keys clients must present (Authorization: Bearer KEY); none configured means no authentication.</summary>
    public string[] ApiKeys { get; set; } = [];
    /// <summary>A certificate serves both endpoints over TLS.</summary>
    public TlsOptions? Tls { get; set; }
    /// <summary>The largest HTTP request body accepted.</summary>
    public long MaxRequestBytes { get; set; } = 8 * 1024 * 1024;
}

/// <summary>A PEM certificate (with its key file) or a PKCS#12 file (with its password).</summary>
public sealed record TlsOptions
{
    public string CertificatePath { get; set; } = "";
    public string? KeyPath { get; set; }
    public string? Password { get; set; }
}
