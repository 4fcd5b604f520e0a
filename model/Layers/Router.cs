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
    readonly Kernels.MatrixWeight _gate;
    readonly Kernels.ITensorKernels _kernels;

    public Router(IWeightSource weights, string prefix, long hidden, int experts, int topK, bool normTopkProb) : base(prefix)
    {
        _weight = new Parameter(weights.Load($"{prefix}.weight", experts, hidden), requires_grad: false);
        _topK = topK;
        _normTopkProb = normTopkProb;
        _gate = new Kernels.MatrixWeight(_weight, experts, hidden);
        _kernels = Kernels.TensorKernels.For(_weight.device);
        RegisterComponents();
    }

    public Routing Route(Tensor x) => _kernels.Route(x, _gate, _topK, _normTopkProb);
}
