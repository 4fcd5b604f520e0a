using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Qwen3MoeSparseMoeBlock as a stage holds it: the router only (<c>mlp.gate</c>). Its experts live in
/// <see cref="ExpertGroup"/>s, reached through an <see cref="IExpertDispatcher"/>.
/// </summary>
public sealed class SparseMoeBlock : nn.Module
{
    [ComponentName(Name = "gate")] readonly Router _gate;

    public SparseMoeBlock(IWeightSource weights, string prefix, long hidden, int experts, int topK, bool normTopkProb) : base(prefix)
    {
        _gate = new Router(weights, $"{prefix}.gate", hidden, experts, topK, normTopkProb);
        RegisterComponents();
    }

    public Router Gate => _gate;
}
