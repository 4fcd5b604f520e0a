using System.Collections.Concurrent;
using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Config;

namespace Qwen3Cluster.Tests.Support;

/// <summary>Random-weights checkpoints made once per test run, in a temporary folder, for equivalence tests.</summary>
public static class TestCheckpoints
{
    static readonly string Root = Path.Combine(Path.GetTempPath(), $"qwen3cluster-tests-{Environment.ProcessId}");
    static readonly ConcurrentDictionary<string, Lazy<string>> Made = new();

    /// <summary>A small MoE: 3 layers (the middle one dense), GQA 4/2, head_dim 16, 8 experts, top-2, vocab 512.</summary>
    public static Qwen3Config SmallMoe => ModelPresets.Moe(layers: 3, hidden: 48, heads: 4, kvHeads: 2, headDim: 16,
        experts: 8, topK: 2, moeIntermediate: 24, intermediate: 64, vocab: 512) with { MlpOnlyLayers = [1] };

    /// <summary>A small MoE whose every matrix row is a multiple of 32 wide, so int8 (Q8_0) quantises all of them.</summary>
    public static Qwen3Config QuantizableMoe => ModelPresets.Moe(layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 16,
        experts: 8, topK: 2, moeIntermediate: 32, intermediate: 64, vocab: 512) with { MlpOnlyLayers = [1] };

    /// <summary>A small dense model with tied embeddings and GQA 6/2.</summary>
    public static Qwen3Config SmallDense => ModelPresets.Dense(layers: 3, hidden: 48, heads: 6, kvHeads: 2, headDim: 8,
        intermediate: 96, tied: true, vocab: 512);

    public static string Get(string name, Qwen3Config config, SafetensorsDType dtype = SafetensorsDType.F32, int shards = 1, ulong seed = 7,
        int[]? favouredExperts = null) =>
        Made.GetOrAdd($"{name}-{dtype}-{shards}-{seed}{(favouredExperts is null ? "" : "-favour-" + string.Join('.', favouredExperts))}", key => new Lazy<string>(() =>
        {
            string dir = Path.Combine(Root, key);
            RandomCheckpoint.Write(dir, config, dtype, shards, seed, favouredExperts: favouredExperts);
            return dir;
        })).Value;

    public static string NewDirectory(string name)
    {
        string dir = Path.Combine(Root, $"{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
