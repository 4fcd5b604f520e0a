using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>Random-weights checkpoints with Qwen3's real tokenizer, made once per test run.</summary>
public static class TestModels
{
    static readonly SemaphoreSlim Gate = new(1, 1);
    static readonly Dictionary<string, string> Made = [];

    public static async Task<string> GetAsync(string preset, int shards = 1)
    {
        await Gate.WaitAsync();
        try
        {
            string key = $"{preset}-{shards}";
            if (Made.TryGetValue(key, out var dir)) return dir;
            dir = Path.Combine(Path.GetTempPath(), $"qwen3cluster-e2e-{Environment.ProcessId}", key);
            RandomCheckpoint.Write(dir, ModelPresets.All[preset], shards: shards, seed: 11);
            var tokenizer = new TokenizerPackage();
            await tokenizer.EnsureAsync();
            tokenizer.CopyTo(dir);
            Made[key] = dir;
            return dir;
        }
        finally
        {
            Gate.Release();
        }
    }
}
