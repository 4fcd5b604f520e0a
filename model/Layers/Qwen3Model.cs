using System.Diagnostics.CodeAnalysis;
using Qwen3Cluster.Model.Config;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Qwen3(Moe)Model restricted to a stage: the embedding (first stage, or a tied last stage), decoder layers
/// [Start, End) registered under their absolute index, and the final norm (last stage).
/// </summary>
public sealed class Qwen3Model : nn.Module
{
    [ComponentName(Name = "embed_tokens")] readonly Embedding? _embedTokens;
    [ComponentName(Name = "layers"), SuppressMessage("Style", "IDE0052", Justification = "Read by RegisterComponents: it names the layers' state-dict keys.")]
    readonly nn.Module _layers;
    [ComponentName(Name = "norm")] readonly RmsNorm? _norm;
    readonly DecoderLayer[] _decoderLayers;

    public Qwen3Model(Qwen3Config config, StageRange range, IWeightSource weights) : base("model")
    {
        long v = config.VocabSize, d = config.HiddenSize;
        if (range.IsFirst || (range.IsLast && config.TieWordEmbeddings))
            _embedTokens = new Embedding(weights, "model.embed_tokens", v, d);
        _decoderLayers = Enumerable.Range(range.Start, range.Count).Select(i => new DecoderLayer(config, i, weights)).ToArray();
        _layers = nn.ModuleDict(_decoderLayers.Select(l => (l.Index.ToString(), (nn.Module)l)).ToArray());
        if (range.IsLast) _norm = new RmsNorm(weights, "model.norm", d, config.RmsNormEps);
        RegisterComponents();
    }

    public Embedding? EmbedTokens => _embedTokens;
    public IReadOnlyList<DecoderLayer> Layers => _decoderLayers;
    public RmsNorm? Norm => _norm;
}
