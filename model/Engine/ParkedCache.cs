namespace Qwen3Cluster.Model.Engine;

/// <summary>The KV blocks of a finished sequence kept for a later request that continues it (a session's next turn).</summary>
public sealed record ParkedCache(string Key, IReadOnlyList<int> Tokens, List<int> BlockTable)
{
    public DateTime LastUsed { get; set; } = DateTime.UtcNow;
}
