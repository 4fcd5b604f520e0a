using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// The layers' matrix work as torch ops: the path of a CUDA device (bfloat16 weights multiply bfloat16 activations
/// there), and on the CPU the reference <see cref="CpuKernels"/> is compared with (in float32).
/// </summary>
public sealed class TorchKernels : ITensorKernels
{
    public static TorchKernels Shared { get; } = new();

    static Tensor Product(Tensor x, MatrixWeight w)
    {
        using var scope = NewDisposeScope();
        var weight = w.Format.IsQ8() ? w.Dequantized() : w.Tensor;
        var input = x.device.type == DeviceType.CPU ? x.to(ScalarType.Float32) : x.to(weight.dtype);
        if (weight.dtype != input.dtype) weight = weight.to(input.dtype);
        return nn.functional.linear(input, weight).to(x.dtype).MoveToOuterDisposeScope();
    }

    public Tensor[] Linear(Tensor x, params MatrixWeight[] weights) => weights.Select(w => Product(x, w)).ToArray();

    public Tensor GatedMlp(Tensor x, MatrixWeight gate, MatrixWeight up, MatrixWeight down)
    {
        using var scope = NewDisposeScope();
        using var g = Product(x, gate);
        using var u = Product(x, up);
        using var h = nn.functional.silu(g) * u;
        return Product(h, down).MoveToOuterDisposeScope();
    }

    /// <summary>transformers' combine: gather each expert's tokens, run the expert, scale by the routing weight, index_add_ back.</summary>
    public Tensor Experts(Tensor x, Tensor expertIds, Tensor routingWeights, ExpertWeights experts)
    {
        using var scope = NewDisposeScope();
        var output = zeros_like(x);                                                  // [T, D]
        using var hostIds = expertIds.cpu();
        var ids = hostIds.data<long>().ToArray();
        int k = (int)expertIds.shape[1];
        using var flatWeights = routingWeights.reshape(-1);                          // [T*K]
        for (int e = experts.Lo; e < experts.Hi; e++)
        {
            var pairs = Enumerable.Range(0, ids.Length).Where(i => ids[i] == e).ToArray();
            if (pairs.Length == 0) continue;
            var tokens = tensor(pairs.Select(i => (long)(i / k)).ToArray(), device: x.device);
            var picks = tensor(pairs.Select(i => (long)i).ToArray(), device: x.device);
            var xe = x.index_select(0, tokens);                                      // [Te, D]
            int local = e - experts.Lo;
            var ye = GatedMlp(xe, experts.Gate[local], experts.Up[local], experts.Down[local])
                * flatWeights.index_select(0, picks).unsqueeze(-1);                  // [Te, D]
            output.index_add_(0, tokens, ye, 1);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>Padded batched attention: gather each sequence's keys into [B, L], mask on the host, softmax in float32.</summary>
    public Tensor Attention(Tensor q, Tensor k, Tensor v, AttentionLayer layer, Tensor cos, Tensor sin, AttentionMetadata meta, KvCachePool pool)
    {
        using var scope = NewDisposeScope();
        long t = q.shape[0];
        int heads = layer.Heads, kvHeads = layer.KvHeads, dh = layer.HeadDim, rep = heads / kvHeads;
        long b = meta.BatchSize, qn = meta.MaxQuery, l = meta.MaxContext;
        var query = Norm(q.view(t, heads, dh), layer.QNormWeight, layer.Eps);        // [T, H, Dh]
        var key = Norm(k.view(t, kvHeads, dh), layer.KNormWeight, layer.Eps);       // [T, Hkv, Dh]
        var value = v.view(t, kvHeads, dh);                                         // [T, Hkv, Dh]
        query = RotaryEmbedding.Apply(query, cos, sin);
        key = RotaryEmbedding.Apply(key, cos, sin);
        pool.Write(layer.Layer, meta.SlotMapping, key, value);

        var (keys, values) = pool.Read(layer.Layer, meta.GatherIndex);              // [B, L, Hkv, Dh]
        keys = keys.permute(0, 2, 1, 3);                                             // [B, Hkv, L, Dh]
        values = values.permute(0, 2, 1, 3);                                         // [B, Hkv, L, Dh]
        var padded = query.index_select(0, meta.QueryIndex.view(-1))                 // [B*Q, H, Dh]
            .view(b, qn, kvHeads, rep, dh)
            .permute(0, 2, 3, 1, 4)                                                  // [B, Hkv, rep, Q, Dh]
            .reshape(b, kvHeads, rep * qn, dh);
        var scores = padded.matmul(keys.transpose(-1, -2)) * layer.Scaling;         // [B, Hkv, rep*Q, L]
        scores = scores.view(b, kvHeads, rep, qn, l)
            .masked_fill(meta.Mask(layer.SlidingWindow).logical_not(), double.NegativeInfinity);
        var probs = nn.functional.softmax(scores, -1, ScalarType.Float32).to(query.dtype);
        return probs.view(b, kvHeads, rep * qn, l).matmul(values)                   // [B, Hkv, rep*Q, Dh]
            .view(b, kvHeads, rep, qn, dh)
            .permute(0, 3, 1, 2, 4)                                                  // [B, Q, Hkv, rep, Dh]
            .reshape(b * qn, heads * dh)
            .index_select(0, meta.UnpadIndex)                                        // [T, H*Dh]
            .MoveToOuterDisposeScope();
    }

    /// <summary>Qwen3RMSNorm over the last dimension, in float32.</summary>
    static Tensor Norm(Tensor x, Tensor weight, double eps)
    {
        var h = x.to(ScalarType.Float32);
        var variance = h.pow(2).mean([-1], keepdim: true);
        return weight * (h * rsqrt(variance + eps)).to(x.dtype);
    }

    public Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        using var scope = NewDisposeScope();
        return Norm(x, weight, eps).MoveToOuterDisposeScope();
    }

    public Routing Route(Tensor x, MatrixWeight gate, int topK, bool normalize)
    {
        using var scope = NewDisposeScope();
        var logits = Product(x, gate);                                               // [T, E]
        var probs = nn.functional.softmax(logits, 1, ScalarType.Float32);           // [T, E]
        var (top, ids) = probs.topk(topK, dim: -1);                                 // [T, K]
        if (normalize) top = top / top.sum(-1, keepdim: true);
        return new Routing(ids.MoveToOuterDisposeScope(), top.to(x.dtype).MoveToOuterDisposeScope());
    }

    public (long[] Argmax, float[] LogSumExp) Normalizers(Tensor logits)
    {
        using var scope = NewDisposeScope();
        return (logits.argmax(-1).cpu().data<long>().ToArray(), logits.logsumexp(-1).cpu().data<float>().ToArray());
    }
}
