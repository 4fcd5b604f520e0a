using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>Qwen3RMSNorm: normalised in float32, then scaled by the weight.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter _weight;
    readonly double _eps;
    readonly Kernels.ITensorKernels _kernels;

    public RmsNorm(IWeightSource weights, string prefix, long size, double eps) : base(prefix)
    {
        _weight = new Parameter(weights.Load($"{prefix}.weight", size), requires_grad: false);
        _eps = eps;
        _kernels = Kernels.TensorKernels.For(_weight.device);
        RegisterComponents();
    }

    public Tensor Weight => _weight;
    public double Eps => _eps;

    public override Tensor forward(Tensor x) => _kernels.RmsNorm(x, _weight, _eps);
}
