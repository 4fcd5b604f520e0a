using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Qwen3Attention over the paged KV pool: q/k/v projections, per-head RMSNorm on q and k before RoPE,
/// grouped-query attention with a float32 softmax, output projection.
/// </summary>
public sealed class Attention : nn.Module
{
    [ComponentName(Name = "q_proj")] readonly LinearProjection _qProj;
    [ComponentName(Name = "k_proj")] readonly LinearProjection _kProj;
    [ComponentName(Name = "v_proj")] readonly LinearProjection _vProj;
    [ComponentName(Name = "o_proj")] readonly LinearProjection _oProj;
    [ComponentName(Name = "q_norm")] readonly RmsNorm _qNorm;
    [ComponentName(Name = "k_norm")] readonly RmsNorm _kNorm;
    readonly int _heads;
    readonly int _kvHeads;
    readonly int _headDim;
    readonly AttentionLayer _layerKernels;

    public Attention(Qwen3Config config, int layer, IWeightSource weights, string prefix) : base(prefix)
    {
        _heads = config.NumAttentionHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        long d = config.HiddenSize;
        bool bias = config.AttentionBias;
        _qProj = new LinearProjection(weights, $"{prefix}.q_proj", d, _heads * _headDim, bias);
        _kProj = new LinearProjection(weights, $"{prefix}.k_proj", d, _kvHeads * _headDim, bias);
        _vProj = new LinearProjection(weights, $"{prefix}.v_proj", d, _kvHeads * _headDim, bias);
        _oProj = new LinearProjection(weights, $"{prefix}.o_proj", _heads * _headDim, d, bias);
        _qNorm = new RmsNorm(weights, $"{prefix}.q_norm", _headDim, config.RmsNormEps);
        _kNorm = new RmsNorm(weights, $"{prefix}.k_norm", _headDim, config.RmsNormEps);
        _layerKernels = new AttentionLayer(layer, _heads, _kvHeads, _headDim, 1.0 / Math.Sqrt(_headDim), config.SlidingWindowFor(layer),
            _qNorm.Weight, _kNorm.Weight, config.RmsNormEps);
        RegisterComponents();
    }

    /// <summary>x [T, D] -> [T, D]; writes the step's keys and values into the pool first, then attends.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, AttentionMetadata meta, KvCachePool pool)
    {
        using var scope = NewDisposeScope();
        Tensor[] qkv;
        using (Kernels.KernelProfile.Measure("attention.qkv"))
            qkv = LinearProjection.Forward(x, _qProj, _kProj, _vProj);             // q [T, H*Dh], k, v [T, Hkv*Dh]
        Tensor heads;
        using (Kernels.KernelProfile.Measure("attention.heads"))
            heads = _qProj.Kernels.Attention(qkv[0], qkv[1], qkv[2], _layerKernels, cos, sin, meta, pool);  // [T, H*Dh]
        using var o = Kernels.KernelProfile.Measure("attention.o");
        return _oProj.forward(heads).MoveToOuterDisposeScope();
    }
}
