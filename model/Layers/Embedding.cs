using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>The token embedding table [V, D].</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter _weight;

    public Embedding(IWeightSource weights, string prefix, long vocab, long hidden) : base(prefix)
    {
        _weight = new Parameter(weights.Load($"{prefix}.weight", vocab, hidden), requires_grad: false);
        RegisterComponents();
    }

    public Tensor Weight => _weight;

    public override Tensor forward(Tensor ids) => _weight.index_select(0, ids);
}
