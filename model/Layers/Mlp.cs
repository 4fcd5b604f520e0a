using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>Qwen3MLP, the dense SwiGLU feed-forward: down(silu(gate(x)) * up(x)).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] readonly LinearProjection _gateProj;
    [ComponentName(Name = "up_proj")] readonly LinearProjection _upProj;
    [ComponentName(Name = "down_proj")] readonly LinearProjection _downProj;

    public Mlp(IWeightSource weights, string prefix, long hidden, long intermediate) : base(prefix)
    {
        _gateProj = new LinearProjection(weights, $"{prefix}.gate_proj", hidden, intermediate);
        _upProj = new LinearProjection(weights, $"{prefix}.up_proj", hidden, intermediate);
        _downProj = new LinearProjection(weights, $"{prefix}.down_proj", intermediate, hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => _gateProj.Kernels.GatedMlp(x, _gateProj.Matrix, _upProj.Matrix, _downProj.Matrix);
}
