using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>The token embedding table [V, D], at the checkpoint's width; looked-up rows come out as float32.</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter _weight;

    public Embedding(IWeightSource weights, string prefix, long vocab, long hidden) : base(prefix)
    {
        _weight = new Parameter(weights.LoadTable($"{prefix}.weight", vocab, hidden), requires_grad: false);
        RegisterComponents();
    }

    public Tensor Weight => _weight;

    public override Tensor forward(Tensor ids)
    {
        var rows = _weight.index_select(0, ids);
        if (rows.dtype == ScalarType.Float32) return rows;
        using (rows) return rows.to(ScalarType.Float32);
    }
}
