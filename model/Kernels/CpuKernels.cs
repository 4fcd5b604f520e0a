using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// The layers' matrix work on the CPU: this project's kernels over weights at their resident width, on the shared
/// thread team. Activations are read and written in place through the tensors' memory.
/// </summary>
public sealed unsafe class CpuKernels(KernelPath path) : ITensorKernels
{
    public static CpuKernels Shared { get; } = new(KernelPaths.Best);

    public KernelPath Path => path;

    static Tensor Float32(Tensor x) => x.dtype == ScalarType.Float32 && x.is_contiguous() ? x.alias() : x.to(ScalarType.Float32).contiguous();

    static float* Pointer(Tensor t)
    {
        fixed (byte* p = t.bytes) return (float*)p;
    }

    public Tensor[] Linear(Tensor x, params MatrixWeight[] weights)
    {
        using var input = Float32(x);
        int m = (int)input.shape[0], k = (int)input.shape[1];
        var outputs = weights.Select(w => empty([m, w.Rows], ScalarType.Float32)).ToArray();
        if (m == 0) return outputs;
        var scratch = KernelScratch.ForProduct();
        var prepared = MatMul.Prepare(path, weights[0].Format, Pointer(input), m, k, scratch);
        var targets = new ProductTarget[weights.Length];
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i].Format != weights[0].Format || weights[i].Cols != k)
                throw new ArgumentException("One pass over several weights needs them of one format and width.");
            targets[i] = new ProductTarget(weights[i].View, Pointer(outputs[i]), weights[i].Rows);
        }
        MatMul.Run(ThreadTeam.Shared, path, prepared, targets);
        return outputs;
    }

    public Tensor GatedMlp(Tensor x, MatrixWeight gate, MatrixWeight up, MatrixWeight down)
    {
        using var input = Float32(x);
        int m = (int)input.shape[0], k = (int)input.shape[1], inner = gate.Rows;
        var output = empty([m, down.Rows], ScalarType.Float32);
        if (m == 0) return output;
        var scratch = KernelScratch.ForProduct();
        var prepared = MatMul.Prepare(path, gate.Format, Pointer(input), m, k, scratch);
        float* h = scratch.Take<float>((long)m * inner);
        MatMul.RunGated(ThreadTeam.Shared, path, prepared, gate.View, up.View, h, inner);
        var hidden = MatMul.Prepare(path, down.Format, h, m, inner, scratch);
        MatMul.Run(ThreadTeam.Shared, path, hidden, [new ProductTarget(down.View, Pointer(output), down.Rows)]);
        return output;
    }

    public Tensor Experts(Tensor x, Tensor expertIds, Tensor routingWeights, ExpertWeights experts)
    {
        using var input = Float32(x);
        using var ids = expertIds.to(ScalarType.Int64).cpu().contiguous();
        using var weights = Float32(routingWeights);
        int m = (int)input.shape[0], d = (int)input.shape[1];
        var output = zeros([m, d], ScalarType.Float32);
        if (m == 0) return output;
        fixed (byte* idBytes = ids.bytes)
        {
            ExpertKernel.Run(ThreadTeam.Shared, path, Pointer(input), m, d, (long*)idBytes, (int)ids.shape[1], Pointer(weights), experts,
                Pointer(output), KernelScratch.ForProduct());
        }
        return output;
    }
}
