namespace Qwen3Cluster.Model.Config;

/// <summary>
/// Shapes for random-weights checkpoints (<c>qwen3 make-model --preset</c>) and the real configs' shapes for
/// checks that need no weights. Token ids follow Qwen3: vocab 151936, bos 151643, eos 151645.
/// </summary>
public static class ModelPresets
{
    public const int QwenVocab = 151936;

    public static readonly IReadOnlyDictionary<string, Qwen3Config> All = new Dictionary<string, Qwen3Config>
    {
        ["tiny-moe"] = Moe(layers: 4, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, experts: 8, topK: 2, moeIntermediate: 32, intermediate: 128),
        ["tiny-dense"] = Dense(layers: 4, hidden: 64, heads: 4, kvHeads: 2, headDim: 32, intermediate: 128, tied: true),
        // Qwen3-30B-A3B scaled down so a 2-core CPU decodes it at several tokens per second.
        ["bench-moe"] = Moe(layers: 8, hidden: 1024, heads: 16, kvHeads: 4, headDim: 64, experts: 32, topK: 4, moeIntermediate: 512, intermediate: 3072),
        ["qwen3-0.6b"] = Dense(layers: 28, hidden: 1024, heads: 16, kvHeads: 8, headDim: 128, intermediate: 3072, tied: true),
        ["qwen3-30b-a3b"] = Moe(layers: 48, hidden: 2048, heads: 32, kvHeads: 4, headDim: 128, experts: 128, topK: 8, moeIntermediate: 768, intermediate: 6144),
        ["qwen3-235b-a22b"] = Moe(layers: 94, hidden: 4096, heads: 64, kvHeads: 4, headDim: 128, experts: 128, topK: 8, moeIntermediate: 1536, intermediate: 12288),
    };

    public static Qwen3Config Dense(int layers, int hidden, int heads, int kvHeads, int headDim, int intermediate, bool tied,
        int vocab = QwenVocab) => new()
    {
        Architecture = Qwen3Config.DenseArchitecture,
        VocabSize = vocab,
        HiddenSize = hidden,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        HeadDim = headDim,
        IntermediateSize = intermediate,
        MaxPositionEmbeddings = 40960,
        RopeTheta = 1_000_000,
        TieWordEmbeddings = tied,
        MaxWindowLayers = layers,
        BosTokenId = 151643,
        EosTokenIds = [151645],
    };

    public static Qwen3Config Moe(int layers, int hidden, int heads, int kvHeads, int headDim, int experts, int topK,
        int moeIntermediate, int intermediate, int vocab = QwenVocab) =>
        Dense(layers, hidden, heads, kvHeads, headDim, intermediate, tied: false, vocab) with
        {
            Architecture = Qwen3Config.MoeArchitecture,
            NumExperts = experts,
            NumExpertsPerTok = topK,
            MoeIntermediateSize = moeIntermediate,
            NormTopkProb = true,
        };
}
