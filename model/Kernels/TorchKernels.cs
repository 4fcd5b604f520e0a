using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// The layers' matrix work as torch ops: the path of a CUDA device (bfloat16 weights multiply bfloat16 activations
/// there), and on the CPU the reference <see cref="CpuKernels"/> is compared with (in float32).
/// </summary>
public sealed class TorchKernels : ITensorKernels
{
    public static TorchKernels Shared { get; } = new();

    static Tensor Product(Tensor x, MatrixWeight w)
    {
        using var scope = NewDisposeScope();
        var weight = w.Format == WeightFormat.Q8_0 ? w.Dequantized() : w.Tensor;
        var input = x.device.type == DeviceType.CPU ? x.to(ScalarType.Float32) : x.to(weight.dtype);
        if (weight.dtype != input.dtype) weight = weight.to(input.dtype);
        return nn.functional.linear(input, weight).to(x.dtype).MoveToOuterDisposeScope();
    }

    public Tensor[] Linear(Tensor x, params MatrixWeight[] weights) => weights.Select(w => Product(x, w)).ToArray();

    public Tensor GatedMlp(Tensor x, MatrixWeight gate, MatrixWeight up, MatrixWeight down)
    {
        using var scope = NewDisposeScope();
        using var g = Product(x, gate);
        using var u = Product(x, up);
        using var h = nn.functional.silu(g) * u;
        return Product(h, down).MoveToOuterDisposeScope();
    }

    /// <summary>transformers' combine: gather each expert's tokens, run the expert, scale by the routing weight, index_add_ back.</summary>
    public Tensor Experts(Tensor x, Tensor expertIds, Tensor routingWeights, ExpertWeights experts)
    {
        using var scope = NewDisposeScope();
        var output = zeros_like(x);                                                  // [T, D]
        using var hostIds = expertIds.cpu();
        var ids = hostIds.data<long>().ToArray();
        int k = (int)expertIds.shape[1];
        using var flatWeights = routingWeights.reshape(-1);                          // [T*K]
        for (int e = experts.Lo; e < experts.Hi; e++)
        {
            var pairs = Enumerable.Range(0, ids.Length).Where(i => ids[i] == e).ToArray();
            if (pairs.Length == 0) continue;
            var tokens = tensor(pairs.Select(i => (long)(i / k)).ToArray(), device: x.device);
            var picks = tensor(pairs.Select(i => (long)i).ToArray(), device: x.device);
            var xe = x.index_select(0, tokens);                                      // [Te, D]
            int local = e - experts.Lo;
            var ye = GatedMlp(xe, experts.Gate[local], experts.Up[local], experts.Down[local])
                * flatWeights.index_select(0, picks).unsqueeze(-1);                  // [Te, D]
            output.index_add_(0, tokens, ye, 1);
        }
        return output.MoveToOuterDisposeScope();
    }
}
