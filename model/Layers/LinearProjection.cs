using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>y = x Wᵀ (+ b), with W [Out, In] taken as loaded rather than randomly initialised first.</summary>
public sealed class LinearProjection : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter _weight;
    [ComponentName(Name = "bias")] readonly Parameter? _bias;

    public LinearProjection(IWeightSource weights, string prefix, long inFeatures, long outFeatures, bool bias = false)
        : base(prefix)
    {
        _weight = new Parameter(weights.Load($"{prefix}.weight", outFeatures, inFeatures), requires_grad: false);
        if (bias) _bias = new Parameter(weights.Load($"{prefix}.bias", outFeatures), requires_grad: false);
        RegisterComponents();
    }

    public LinearProjection(string name, Tensor weight) : base(name)
    {
        _weight = new Parameter(weight, requires_grad: false);
        RegisterComponents();
    }

    public Tensor Weight => _weight;

    public override Tensor forward(Tensor x) => nn.functional.linear(x, _weight, _bias);
}
