using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Layers;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// The weight bytes one decoded token reads: every layer's attention projections and its dense MLP or its top-k experts
/// and router, and the LM head, at the width they stay resident in (the embedding row and the KV cache are small
/// beside them and left out). With a bandwidth, it gives the roofline a decode speed is measured against.
/// </summary>
public static class DecodeTraffic
{
    public static long BytesPerToken(Qwen3Config config, WeightStorage storage, bool bf16Checkpoint)
    {
        double matrix = storage switch
        {
            WeightStorage.Int8 => 34.0 / 32,
            WeightStorage.Stored when bf16Checkpoint => 2,
            _ => 4,
        };
        double table = storage == WeightStorage.Float32 || !bf16Checkpoint ? 4 : 2;
        long d = config.HiddenSize, heads = config.NumAttentionHeads, kv = config.NumKeyValueHeads, dh = config.HeadDim;
        double bytes = 0;
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            bytes += matrix * (2 * heads * dh * d + 2 * kv * dh * d);
            bytes += config.IsSparseLayer(layer)
                ? matrix * config.NumExpertsPerTok * 3L * config.MoeIntermediateSize * d + 4.0 * config.NumExperts * d
                : matrix * 3L * config.IntermediateSize * d;
        }
        bytes += (config.TieWordEmbeddings ? table : matrix) * config.VocabSize * d;
        return (long)bytes;
    }
}
