using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Config;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Qwen3(Moe)DecoderLayer, split where a sparse layer hands its tokens to the experts:
/// h = h + attn(input_layernorm(h)); x = post_attention_layernorm(h); h = h + mlp(x).
/// </summary>
public sealed class DecoderLayer : nn.Module
{
    [ComponentName(Name = "self_attn")] readonly Attention _selfAttn;
    [ComponentName(Name = "input_layernorm")] readonly RmsNorm _inputLayernorm;
    [ComponentName(Name = "post_attention_layernorm")] readonly RmsNorm _postAttentionLayernorm;
    [ComponentName(Name = "mlp")] readonly nn.Module _mlp;

    public int Index { get; }
    public bool IsSparse { get; }

    public DecoderLayer(Qwen3Config config, int index, IWeightSource weights) : base($"model.layers.{index}")
    {
        string prefix = $"model.layers.{index}";
        Index = index;
        IsSparse = config.IsSparseLayer(index);
        _selfAttn = new Attention(config, index, weights, $"{prefix}.self_attn");
        _inputLayernorm = new RmsNorm(weights, $"{prefix}.input_layernorm", config.HiddenSize, config.RmsNormEps);
        _postAttentionLayernorm = new RmsNorm(weights, $"{prefix}.post_attention_layernorm", config.HiddenSize, config.RmsNormEps);
        _mlp = IsSparse
            ? new SparseMoeBlock(weights, $"{prefix}.mlp", config.HiddenSize, config.NumExperts, config.NumExpertsPerTok, config.NormTopkProb)
            : new Mlp(weights, $"{prefix}.mlp", config.HiddenSize, config.IntermediateSize);
        RegisterComponents();
    }

    /// <summary>h [T, D] -> (h + attention, the normalised input of the feed-forward).</summary>
    public (Tensor Hidden, Tensor FeedForwardInput) Attend(Tensor h, Tensor cos, Tensor sin, AttentionMetadata meta, KvCachePool pool)
    {
        using var scope = NewDisposeScope();
        var attended = h + _selfAttn.Forward(_inputLayernorm.forward(h), cos, sin, meta, pool);
        var input = _postAttentionLayernorm.forward(attended);
        return (attended.MoveToOuterDisposeScope(), input.MoveToOuterDisposeScope());
    }

    public Tensor DenseFeedForward(Tensor x) => ((Mlp)_mlp).forward(x);

    public Routing Route(Tensor x) => ((SparseMoeBlock)_mlp).Gate.Route(x);
}
