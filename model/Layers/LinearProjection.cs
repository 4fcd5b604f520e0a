using Qwen3Cluster.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// y = x Wᵀ (+ b), W [Out, In] resident at its checkpoint width (or Q8_0) and multiplied by the device's kernels;
/// taken as loaded rather than randomly initialised first.
/// </summary>
public sealed class LinearProjection : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter _weight;
    [ComponentName(Name = "bias")] readonly Parameter? _bias;

    public LinearProjection(IWeightSource weights, string prefix, long inFeatures, long outFeatures, bool bias = false)
        : this(prefix, weights.LoadMatrix($"{prefix}.weight", outFeatures, inFeatures), outFeatures, inFeatures)
    {
        if (bias)
        {
            _bias = new Parameter(weights.Load($"{prefix}.bias", outFeatures), requires_grad: false);
            register_parameter("bias", _bias);
        }
    }

    /// <summary>A projection over a tensor that is already resident (the tied LM head over the embedding).</summary>
    public LinearProjection(string name, Tensor weight, long outFeatures, long inFeatures) : base(name)
    {
        _weight = new Parameter(weight, requires_grad: false);
        Matrix = new MatrixWeight(_weight, outFeatures, inFeatures);
        Kernels = TensorKernels.For(_weight.device);
        RegisterComponents();
    }

    public MatrixWeight Matrix { get; }
    public ITensorKernels Kernels { get; }

    public override Tensor forward(Tensor x)
    {
        var y = Kernels.Linear(x, Matrix)[0];
        if (_bias is null) return y;
        using (y) return y + _bias;
    }

    /// <summary>Several projections of one input in one pass (q, k and v); biases, if any, added after.</summary>
    public static Tensor[] Forward(Tensor x, params LinearProjection[] projections)
    {
        var outputs = projections[0].Kernels.Linear(x, projections.Select(p => p.Matrix).ToArray());
        for (int i = 0; i < outputs.Length; i++)
        {
            if (projections[i]._bias is not { } bias) continue;
            using var unbiased = outputs[i];
            outputs[i] = unbiased + bias;
        }
        return outputs;
    }
}
