using Qwen3Cluster.Model.Config;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Experts [Lo, Hi) of one sparse layer, their SwiGLU weights stacked: gate and up [E_g, I, D], down [E_g, D, I].
/// Given tokens with their top-k ids and weights, it runs each of its experts on the tokens routed to it and
/// returns the weighted sum [T, D] of its experts' outputs, as transformers' combine does (index_add_).
/// </summary>
public sealed class ExpertGroup : nn.Module
{
    [ComponentName(Name = "gate_proj")] readonly Parameter _gate;
    [ComponentName(Name = "up_proj")] readonly Parameter _up;
    [ComponentName(Name = "down_proj")] readonly Parameter _down;

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
        RegisterComponents();
    }

    public static string ExpertWeightName(int layer, int expert, string projection) =>
        $"model.layers.{layer}.mlp.experts.{expert}.{projection}.weight";

    static Tensor Stack(IWeightSource weights, int layer, int lo, int hi, string projection, long rows, long cols)
    {
        var stacked = empty([hi - lo, rows, cols], ScalarType.Float32, weights.Device);
        for (int e = lo; e < hi; e++)
        {
            using var w = weights.Load(ExpertWeightName(layer, e, projection), rows, cols);
            using var slot = stacked[e - lo];
            if (weights.Device.type != DeviceType.META) slot.copy_(w);
        }
        return stacked;
    }

    /// <summary>
    /// x [T, D], expertIds [T, K] (global ids; those outside [Lo, Hi) are ignored), weights [T, K] -> [T, D].
    /// </summary>
    public Tensor Forward(Tensor x, Tensor expertIds, Tensor weights)
    {
        using var scope = NewDisposeScope();
        var output = zeros_like(x);                                                  // [T, D]
        using var hostIds = expertIds.cpu();
        var ids = hostIds.data<long>().ToArray();
        int k = (int)expertIds.shape[1];
        var routed = RoutedTokens(ids, k);
        using var flatWeights = weights.reshape(-1);                                 // [T*K]
        for (int e = 0; e < routed.Length; e++)
        {
            if (routed[e] is not { Count: > 0 } pairs) continue;
            var tokens = tensor(pairs.Select(p => (long)p.Token).ToArray(), device: x.device);
            var picks = tensor(pairs.Select(p => (long)(p.Token * k + p.Slot)).ToArray(), device: x.device);
            var xe = x.index_select(0, tokens);                                      // [Te, D]
            var h = nn.functional.silu(xe.matmul(_gate[e].t())) * xe.matmul(_up[e].t()); // [Te, I]
            var ye = h.matmul(_down[e].t()) * flatWeights.index_select(0, picks).unsqueeze(-1); // [Te, D]
            output.index_add_(0, tokens, ye, 1);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>For each local expert, the (token, top-k slot) pairs routed to it, in token order.</summary>
    List<(int Token, int Slot)>?[] RoutedTokens(long[] ids, int k)
    {
        var routed = new List<(int, int)>?[Hi - Lo];
        for (int i = 0; i < ids.Length; i++)
        {
            long e = ids[i];
            if (e < Lo || e >= Hi) continue;
            (routed[e - Lo] ??= []).Add((i / k, i % k));
        }
        return routed;
    }
}
