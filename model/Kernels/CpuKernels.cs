using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Layers;
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

    /// <summary>
    /// A tensor's values as contiguous float32: the tensor itself when it already is (nothing to dispose, no handle
    /// made: a step makes dozens of these), else a converted copy that <see cref="Dispose"/> frees.
    /// </summary>
    readonly struct Float32 : IDisposable
    {
        readonly Tensor? _copy;

        public Float32(Tensor x)
        {
            if (x.dtype == ScalarType.Float32 && x.is_contiguous()) Tensor = x;
            else Tensor = _copy = x.to(ScalarType.Float32).contiguous();
        }

        public Tensor Tensor { get; }
        public float* Pointer => CpuKernels.Pointer(Tensor);
        public int Size(int dim) => (int)Tensor.size(dim);
        public void Dispose() => _copy?.Dispose();
    }

    static float* Pointer(Tensor t)
    {
        fixed (byte* p = t.bytes) return (float*)p;
    }

    public Tensor[] Linear(Tensor x, params MatrixWeight[] weights)
    {
        using var input = new Float32(x);
        int m = input.Size(0), k = input.Size(1);
        var outputs = new Tensor[weights.Length];
        for (int i = 0; i < weights.Length; i++) outputs[i] = empty([m, weights[i].Rows], ScalarType.Float32);
        if (m == 0) return outputs;
        var scratch = KernelScratch.ForProduct();
        var prepared = MatMul.Prepare(path, weights[0].Format, input.Pointer, m, k, scratch);
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
        using var input = new Float32(x);
        int m = input.Size(0), k = input.Size(1), inner = gate.Rows;
        var output = empty([m, down.Rows], ScalarType.Float32);
        if (m == 0) return output;
        var scratch = KernelScratch.ForProduct();
        var prepared = MatMul.Prepare(path, gate.Format, input.Pointer, m, k, scratch);
        float* h = scratch.Take<float>((long)m * inner);
        MatMul.RunGated(ThreadTeam.Shared, path, prepared, gate.View, up.View, h, inner);
        var hidden = MatMul.Prepare(path, down.Format, h, m, inner, scratch);
        MatMul.Run(ThreadTeam.Shared, path, hidden, [new ProductTarget(down.View, Pointer(output), down.Rows)]);
        return output;
    }

    public Tensor Experts(Tensor x, Tensor expertIds, Tensor routingWeights, ExpertWeights experts)
    {
        using var input = new Float32(x);
        using var ids = expertIds.to(ScalarType.Int64).cpu().contiguous();
        using var weights = new Float32(routingWeights);
        int m = input.Size(0), d = input.Size(1);
        var output = zeros([m, d], ScalarType.Float32);
        if (m == 0) return output;
        fixed (byte* idBytes = ids.bytes)
        {
            ExpertKernel.Run(ThreadTeam.Shared, path, input.Pointer, m, d, (long*)idBytes, (int)ids.size(1), weights.Pointer, experts,
                Pointer(output), KernelScratch.ForProduct());
        }
        return output;
    }

    public Tensor Attention(Tensor q, Tensor k, Tensor v, AttentionLayer layer, Tensor cos, Tensor sin, AttentionMetadata meta, KvCachePool pool)
    {
        // q and k are normalised and rotated in place: they are this step's own projections, used for nothing else.
        using var query = new Float32(q);
        using var key = new Float32(k);
        using var value = new Float32(v);
        using var cosines = new Float32(cos);
        using var sines = new Float32(sin);
        using var qNorm = new Float32(layer.QNormWeight);
        using var kNorm = new Float32(layer.KNormWeight);
        var output = empty([query.Size(0), (long)layer.Heads * layer.HeadDim], ScalarType.Float32);
        if (query.Size(0) == 0) return output;
        var step = new AttentionKernel.Step(meta.Context, layer.SlidingWindow);
        AttentionKernel.Run(ThreadTeam.Shared, path, layer, query.Pointer, key.Pointer, value.Pointer, qNorm.Pointer, kNorm.Pointer,
            cosines.Pointer, sines.Pointer, (float*)pool.KeysPointer(layer.Layer), (float*)pool.ValuesPointer(layer.Layer), step, meta.Slots, Pointer(output));
        return output;
    }

    public Tensor RmsNorm(Tensor x, Tensor weight, double eps)
    {
        using var input = new Float32(x);
        using var w = new Float32(weight);
        var output = empty_like(input.Tensor);
        long d = input.Size(-1), rows = input.Tensor.numel() / Math.Max(1, d);
        if (rows > 0) RowOps.RmsNorm(path, input.Pointer, w.Pointer, (int)rows, (int)d, (float)eps, Pointer(output));
        return output;
    }

    public Routing Route(Tensor x, MatrixWeight gate, int topK, bool normalize)
    {
        using var logits = Linear(x, gate)[0];                                      // [T, E]
        int t = (int)logits.size(0), e = (int)logits.size(1);
        var ids = empty([t, topK], ScalarType.Int64);
        var weights = empty([t, topK], ScalarType.Float32);
        if (t > 0)
        {
            fixed (byte* idBytes = ids.bytes)
                RowOps.TopK(Pointer(logits), t, e, topK, normalize, (long*)idBytes, Pointer(weights));
        }
        return new Routing(ids, weights);
    }

    public (long[] Argmax, float[] LogSumExp) Normalizers(Tensor logits)
    {
        using var values = new Float32(logits);
        int n = values.Size(0), v = values.Size(1);
        var argmax = new long[n];
        var logSumExp = new float[n];
        if (n == 0) return (argmax, logSumExp);
        // Each row in segments of at least 4096 logits, shared out over the team, then combined in order.
        int segments = Math.Clamp(v / 4096, 1, 32);
        var job = new NormalizerJob(path, values.Pointer, n, v, segments);
        ThreadTeam.Shared.Run(n * segments, job);
        for (int i = 0; i < n; i++)
        {
            var stats = job.Stats.AsSpan(i * segments, segments);
            float max = float.NegativeInfinity;
            foreach (var s in stats) max = MathF.Max(max, s.Max);
            double sum = 0;
            bool found = false;
            for (int g = 0; g < segments; g++)
            {
                var s = stats[g];
                if (!found && s.Max == max)
                {
                    argmax[i] = (long)g * v / segments + s.Argmax;
                    found = true;
                }
                if (s.Max != float.NegativeInfinity) sum += s.SumExp * Math.Exp(s.Max - max);
            }
            logSumExp[i] = float.IsNegativeInfinity(max) ? max : (float)(max + Math.Log(sum));
        }
        return (argmax, logSumExp);
    }

    readonly record struct SegmentStat(float Max, int Argmax, float SumExp);

    sealed class NormalizerJob(KernelPath path, float* rows, int n, int v, int segments) : TeamJob
    {
        public readonly SegmentStat[] Stats = new SegmentStat[n * segments];

        public override void Execute(int chunk)
        {
            int row = chunk / segments, g = chunk % segments;
            int from = (int)((long)g * v / segments), to = (int)((long)(g + 1) * v / segments);
            RowOps.SegmentStats(path, rows + (long)row * v + from, to - from, out float max, out int argmax, out float sumExp);
            Stats[chunk] = new SegmentStat(max, argmax, sumExp);
        }
    }
}
