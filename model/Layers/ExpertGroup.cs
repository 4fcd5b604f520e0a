using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Experts [Lo, Hi) of one sparse layer, their SwiGLU weights stacked at their resident width: gate and up
/// [E_g, I, D], down [E_g, D, I] (Q8_0: each row as blocks). Given tokens with their top-k ids and weights, it returns
/// the weighted sum [T, D] of its experts' outputs, as transformers' combine does.
/// </summary>
public sealed class ExpertGroup : nn.Module
{
    [ComponentName(Name = "gate_proj")] readonly Parameter _gate;
    [ComponentName(Name = "up_proj")] readonly Parameter _up;
    [ComponentName(Name = "down_proj")] readonly Parameter _down;
    readonly ExpertWeights _experts;
    readonly ITensorKernels _kernels;

    public int Layer { get; }
    public int Lo { get; }
    public int Hi { get; }

    public ExpertGroup(Qwen3Config config, int layer, int lo, int hi, IWeightSource weights)
        : base($"model.layers.{layer}.mlp.experts[{lo}..{hi})")
    {
        if (lo < 0 || hi > config.NumExperts || lo >= hi)
            throw new ArgumentOutOfRangeException(nameof(lo), $"Expert range [{lo}, {hi}) is not within 0..{config.NumExperts}.");
        Layer = layer;
        Lo = lo;
        Hi = hi;
        long d = config.HiddenSize, i = config.MoeIntermediateSize;
        _gate = new Parameter(Stack(weights, layer, lo, hi, "gate_proj", i, d), requires_grad: false);
        _up = new Parameter(Stack(weights, layer, lo, hi, "up_proj", i, d), requires_grad: false);
        _down = new Parameter(Stack(weights, layer, lo, hi, "down_proj", d, i), requires_grad: false);
        _experts = new ExpertWeights(lo, hi, Matrices(_gate, i, d), Matrices(_up, i, d), Matrices(_down, d, i));
        _kernels = TensorKernels.For(weights.Device);
        RegisterComponents();
    }

    public static string ExpertWeightName(int layer, int expert, string projection) =>
        $"model.layers.{layer}.mlp.experts.{expert}.{projection}.weight";

    static Tensor Stack(IWeightSource weights, int layer, int lo, int hi, string projection, long rows, long cols) =>
        weights.LoadStacked([.. Enumerable.Range(lo, hi - lo).Select(e => ExpertWeightName(layer, e, projection))], rows, cols);

    MatrixWeight[] Matrices(Tensor stacked, long rows, long cols) =>
        Enumerable.Range(0, Hi - Lo).Select(e => new MatrixWeight(stacked[e], rows, cols)).ToArray();

    /// <summary>
    /// x [T, D], expertIds [T, K] (global ids; those outside [Lo, Hi) are ignored), weights [T, K] -> [T, D].
    /// </summary>
    public Tensor Forward(Tensor x, Tensor expertIds, Tensor weights) => _kernels.Experts(x, expertIds, weights, _experts);
}
