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
/// the weighted sum [T, D] of its experts' outputs, as transformers' combine does. A slice of the experts
/// (<see cref="ExpertRange.Slices"/> above 1) holds I / slices of the intermediate rows and returns its share of that
/// sum: the slices of a range add up to it.
/// </summary>
public sealed class ExpertGroup : nn.Module
{
    [ComponentName(Name = "gate_proj")] readonly Parameter _gate;
    [ComponentName(Name = "up_proj")] readonly Parameter _up;
    [ComponentName(Name = "down_proj")] readonly Parameter _down;
    readonly ExpertWeights _experts;
    readonly ITensorKernels _kernels;

    public int Layer { get; }
    public ExpertRange Range { get; }
    public int Lo => Range.Lo;
    public int Hi => Range.Hi;

    public ExpertGroup(Qwen3Config config, int layer, ExpertRange range, IWeightSource weights)
        : base($"model.layers.{layer}.mlp.experts[{range.Lo}..{range.Hi})" + (range.Slices > 1 ? $".slice{range.Slice + 1}of{range.Slices}" : ""))
    {
        if (range.Lo < 0 || range.Hi > config.NumExperts || range.Lo >= range.Hi)
            throw new ArgumentOutOfRangeException(nameof(range), $"Expert range {range} is not within 0..{config.NumExperts}.");
        if (range.Slices < 1 || range.Slice < 0 || range.Slice >= range.Slices)
            throw new ArgumentOutOfRangeException(nameof(range), $"Expert range {range}: slice {range.Slice} of {range.Slices} does not exist.");
        Layer = layer;
        Range = range;
        long d = config.HiddenSize, inner = config.MoeIntermediateSize;
        var (from, i) = range.Part(inner);
        // Whole experts load whole matrices (no part: a column part would be gathered for nothing).
        MatrixPart? rows = range.Slices > 1 ? MatrixPart.RowsOf(from, i) : null, columns = range.Slices > 1 ? MatrixPart.ColumnsOf(from, i) : null;
        _gate = new Parameter(Stack(weights, layer, "gate_proj", inner, d, rows), requires_grad: false);
        _up = new Parameter(Stack(weights, layer, "up_proj", inner, d, rows), requires_grad: false);
        _down = new Parameter(Stack(weights, layer, "down_proj", d, inner, columns), requires_grad: false);
        _experts = new ExpertWeights(Lo, Hi, Matrices(_gate, i, d), Matrices(_up, i, d), Matrices(_down, d, i));
        _kernels = TensorKernels.For(weights.Device);
        RegisterComponents();
    }

    public static string ExpertWeightName(int layer, int expert, string projection) =>
        $"model.layers.{layer}.mlp.experts.{expert}.{projection}.weight";

    /// <summary>The group's experts' matrices [rows, cols] of one projection, stacked; only <paramref name="part"/> of each when given.</summary>
    Tensor Stack(IWeightSource weights, int layer, string projection, long rows, long cols, MatrixPart? part) =>
        weights.LoadStacked([.. Enumerable.Range(Lo, Hi - Lo).Select(e => ExpertWeightName(layer, e, projection))], rows, cols, part);

    MatrixWeight[] Matrices(Tensor stacked, long rows, long cols) =>
        Enumerable.Range(0, Hi - Lo).Select(e => new MatrixWeight(stacked[e], rows, cols)).ToArray();

    /// <summary>
    /// x [T, D], expertIds [T, K] (global ids; those outside [Lo, Hi) are ignored), weights [T, K] -> [T, D].
    /// </summary>
    public Tensor Forward(Tensor x, Tensor expertIds, Tensor weights) => _kernels.Experts(x, expertIds, weights, _experts);
}
