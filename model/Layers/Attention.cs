using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Config;
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
    readonly int _layer;
    readonly int _heads;
    readonly int _kvHeads;
    readonly int _headDim;
    readonly double _scaling;
    readonly int? _slidingWindow;

    public Attention(Qwen3Config config, int layer, IWeightSource weights, string prefix) : base(prefix)
    {
        _layer = layer;
        _heads = config.NumAttentionHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _scaling = 1.0 / Math.Sqrt(_headDim);
        _slidingWindow = config.SlidingWindowFor(layer);
        long d = config.HiddenSize;
        bool bias = config.AttentionBias;
        _qProj = new LinearProjection(weights, $"{prefix}.q_proj", d, _heads * _headDim, bias);
        _kProj = new LinearProjection(weights, $"{prefix}.k_proj", d, _kvHeads * _headDim, bias);
        _vProj = new LinearProjection(weights, $"{prefix}.v_proj", d, _kvHeads * _headDim, bias);
        _oProj = new LinearProjection(weights, $"{prefix}.o_proj", _heads * _headDim, d, bias);
        _qNorm = new RmsNorm(weights, $"{prefix}.q_norm", _headDim, config.RmsNormEps);
        _kNorm = new RmsNorm(weights, $"{prefix}.k_norm", _headDim, config.RmsNormEps);
        RegisterComponents();
    }

    /// <summary>x [T, D] -> [T, D]; writes the step's keys and values into the pool first, then attends.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, AttentionMetadata meta, KvCachePool pool)
    {
        using var scope = NewDisposeScope();
        long t = x.shape[0];
        int rep = _heads / _kvHeads;
        long b = meta.BatchSize, q = meta.MaxQuery, l = meta.MaxContext;

        var qkv = LinearProjection.Forward(x, _qProj, _kProj, _vProj);             // one pass over the three
        var query = _qNorm.forward(qkv[0].view(t, _heads, _headDim));               // [T, H, Dh]
        var key = _kNorm.forward(qkv[1].view(t, _kvHeads, _headDim));               // [T, Hkv, Dh]
        var value = qkv[2].view(t, _kvHeads, _headDim);                             // [T, Hkv, Dh]
        query = RotaryEmbedding.Apply(query, cos, sin);
        key = RotaryEmbedding.Apply(key, cos, sin);
        pool.Write(_layer, meta.SlotMapping, key, value);

        var (keys, values) = pool.Read(_layer, meta.GatherIndex);                   // [B, L, Hkv, Dh]
        keys = keys.permute(0, 2, 1, 3);                                             // [B, Hkv, L, Dh]
        values = values.permute(0, 2, 1, 3);                                         // [B, Hkv, L, Dh]
        var padded = query.index_select(0, meta.QueryIndex.view(-1))                 // [B*Q, H, Dh]
            .view(b, q, _kvHeads, rep, _headDim)
            .permute(0, 2, 3, 1, 4)                                                  // [B, Hkv, rep, Q, Dh]
            .reshape(b, _kvHeads, rep * q, _headDim);
        var scores = padded.matmul(keys.transpose(-1, -2)) * _scaling;              // [B, Hkv, rep*Q, L]
        scores = scores.view(b, _kvHeads, rep, q, l)
            .masked_fill(meta.Mask(_slidingWindow).logical_not(), double.NegativeInfinity);
        var probs = nn.functional.softmax(scores, -1, ScalarType.Float32).to(query.dtype);
        var output = probs.view(b, _kvHeads, rep * q, l).matmul(values)              // [B, Hkv, rep*Q, Dh]
            .view(b, _kvHeads, rep, q, _headDim)
            .permute(0, 3, 1, 2, 4)                                                  // [B, Q, Hkv, rep, Dh]
            .reshape(b * q, _heads * _headDim)
            .index_select(0, meta.UnpadIndex);                                       // [T, H*Dh]
        return _oProj.forward(output).MoveToOuterDisposeScope();
    }
}
