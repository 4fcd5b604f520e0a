using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>The top-k choice of a sparse layer: expert ids [T, K] (int64) and routing weights [T, K] (float32).</summary>
public sealed record Routing(Tensor ExpertIds, Tensor Weights) : IDisposable
{
    public void Dispose()
    {
        ExpertIds.Dispose();
        Weights.Dispose();
    }
}

/// <summary>
/// The router of Qwen3MoeSparseMoeBlock (checkpoint name <c>mlp.gate</c>): linear -> softmax in float32 ->
/// top-k -> renormalised when norm_topk_prob.
/// </summary>
public sealed class Router : nn.Module
{
    [ComponentName(Name = "weight")] readonly Parameter _weight;
    readonly int _topK;
    readonly bool _normTopkProb;

    public Router(IWeightSource weights, string prefix, long hidden, int experts, int topK, bool normTopkProb) : base(prefix)
    {
        _weight = new Parameter(weights.Load($"{prefix}.weight", experts, hidden), requires_grad: false);
        _topK = topK;
        _normTopkProb = normTopkProb;
        RegisterComponents();
    }

    public Routing Route(Tensor x)
    {
        using var scope = NewDisposeScope();
        var logits = nn.functional.linear(x, _weight);                              // [T, E]
        var probs = nn.functional.softmax(logits, 1, ScalarType.Float32);           // [T, E]
        var (top, ids) = probs.topk(_topK, dim: -1);                                // [T, K]
        if (_normTopkProb) top = top / top.sum(-1, keepdim: true);
        return new Routing(ids.MoveToOuterDisposeScope(), top.to(x.dtype).MoveToOuterDisposeScope());
    }
}
