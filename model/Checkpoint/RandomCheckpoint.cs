using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>
/// A random-weights checkpoint in Hugging Face format for a config: every tensor the model reads, under its real
/// name. Linear weights ~ N(0, 1/fan_in) and embeddings ~ N(0, 1) keep activations and logits of order one, so
/// greedy choices have clear margins; norm weights are 1 + N(0, 0.1²) so a mistake in a norm shows.
/// <para>
/// <c>favouredExperts</c> skews the MoE routers, as a real router skewed by its training data is: every embedding
/// gets <see cref="FavourOffset"/> added to hidden dimension 0, and every layer's router weight for each favoured
/// expert gets <see cref="FavourGain"/> on that dimension, so those experts win most of the top-k for every token.
/// </para>
/// </summary>
public static class RandomCheckpoint
{
    public static IReadOnlyList<(string Name, long[] Shape)> TensorShapes(Qwen3Config config)
    {
        var all = new[] { new StageRange(0, config.NumHiddenLayers, config.NumHiddenLayers) };
        var groups = config.IsMoe && config.NumExperts > 0 ? new[] { new ExpertRange(0, config.NumExperts) } : [];
        var meta = new MetaWeights();
        LocalModel.CountTensors(config, all, groups, meta);
        return meta.Requested.Select(kv => (kv.Key, kv.Value)).ToArray();
    }

    public const float FavourOffset = 4;
    public const float FavourGain = 1;

    public static void Write(string directory, Qwen3Config config, SafetensorsDType dtype = SafetensorsDType.F32,
        int shards = 1, ulong seed = 0, GenerationConfig? generation = null, IProgress<(int Written, int Total)>? progress = null,
        IReadOnlyList<int>? favouredExperts = null)
    {
        var outside = (favouredExperts ?? []).Where(e => e < 0 || e >= config.NumExperts).ToList();
        if (outside.Count > 0)
            throw new ArgumentOutOfRangeException(nameof(favouredExperts), $"Expert(s) {string.Join(", ", outside)} outside the config's {config.NumExperts}.");
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"),
            (config with { TorchDtype = dtype == SafetensorsDType.F32 ? "float32" : dtype == SafetensorsDType.BF16 ? "bfloat16" : "float16" }).ToJson());
        File.WriteAllText(Path.Combine(directory, GenerationConfig.FileName), (generation ?? GenerationConfig.Qwen3Default).ToJson());
        var generator = new Generator(seed, new Device(DeviceType.CPU));
        var specs = TensorShapes(config)
            .Select(t => new TensorSpec(t.Name, t.Shape, dtype, () => Favour(t.Name, Values(t.Name, t.Shape, generator), favouredExperts)))
            .ToArray();
        try
        {
            SafetensorsWriter.WriteCheckpoint(directory, specs, shards, progress);
        }
        finally
        {
            generator.Dispose();
        }
    }

    static Tensor Favour(string name, Tensor values, IReadOnlyList<int>? experts)
    {
        if (experts is not { Count: > 0 }) return values;
        if (name.Contains("embed_tokens", StringComparison.Ordinal)) values[TensorIndex.Colon, 0].add_(FavourOffset);
        else if (name.EndsWith("mlp.gate.weight", StringComparison.Ordinal))
            foreach (int e in experts) values[e, 0].add_(FavourGain);
        return values;
    }

    static Tensor Values(string name, long[] shape, Generator generator)
    {
        using var noise = randn(shape, ScalarType.Float32, generator: generator);
        if (name.EndsWith("norm.weight", StringComparison.Ordinal)) return noise * 0.1 + 1.0;
        if (name.EndsWith(".bias", StringComparison.Ordinal)) return noise * 0.1;
        if (name.Contains("embed_tokens", StringComparison.Ordinal)) return noise.clone();
        return noise / Math.Sqrt(shape[^1]);
    }
}
