using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>Small per-row operations of a step (norms, routing) done in place on the host instead of as a chain of torch ops.</summary>
public static unsafe class RowOps
{
    /// <summary>y = weight * (x / sqrt(mean(x²) + eps)) for each of <paramref name="rows"/> rows of <paramref name="d"/> floats (Qwen3RMSNorm, float32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RmsNorm(KernelPath path, float* x, float* weight, int rows, int d, float eps, float* y)
    {
        for (int r = 0; r < rows; r++)
        {
            float* xr = x + (long)r * d, yr = y + (long)r * d;
            int i = 0;
            float squares = 0;
            if (path >= KernelPath.Avx512)
            {
                var acc = Vector512<float>.Zero;
                for (; i + 16 <= d; i += 16)
                {
                    var v = Vector512.Load(xr + i);
                    acc = Vector512.FusedMultiplyAdd(v, v, acc);
                }
                squares = Vector512.Sum(acc);
            }
            else if (path == KernelPath.Vector256)
            {
                Vector256<float> a0 = default, a1 = default;
                for (; i + 16 <= d; i += 16)
                {
                    var v = Vector256.Load(xr + i);
                    var u = Vector256.Load(xr + i + 8);
                    a0 = Vector256.FusedMultiplyAdd(v, v, a0);
                    a1 = Vector256.FusedMultiplyAdd(u, u, a1);
                }
                squares = Vector256.Sum(a0 + a1);
            }
            for (; i < d; i++) squares += xr[i] * xr[i];
            float inv = 1f / MathF.Sqrt(squares / d + eps);
            i = 0;
            if (path >= KernelPath.Avx512)
            {
                var scale = Vector512.Create(inv);
                for (; i + 16 <= d; i += 16) (Vector512.Load(weight + i) * (Vector512.Load(xr + i) * scale)).Store(yr + i);
            }
            else if (path == KernelPath.Vector256)
            {
                var scale = Vector256.Create(inv);
                for (; i + 8 <= d; i += 8) (Vector256.Load(weight + i) * (Vector256.Load(xr + i) * scale)).Store(yr + i);
            }
            for (; i < d; i++) yr[i] = weight[i] * (xr[i] * inv);
        }
    }

    /// <summary>
    /// For each row of logits [rows, e]: softmax, the k largest probabilities (largest first) and their ids, divided by
    /// their sum when <paramref name="normalize"/> (Qwen3-MoE's norm_topk_prob).
    /// </summary>
    public static void TopK(float* logits, int rows, int e, int k, bool normalize, long* ids, float* weights)
    {
        float* probs = stackalloc float[e];
        for (int r = 0; r < rows; r++)
        {
            float* row = logits + (long)r * e;
            float max = row[0];
            for (int i = 1; i < e; i++) max = MathF.Max(max, row[i]);
            float sum = 0;
            for (int i = 0; i < e; i++) sum += probs[i] = MathF.Exp(row[i] - max);
            for (int i = 0; i < e; i++) probs[i] /= sum;
            float chosen = 0;
            for (int j = 0; j < k; j++)
            {
                int best = -1;
                for (int i = 0; i < e; i++)
                    if (probs[i] >= 0 && (best < 0 || probs[i] > probs[best])) best = i;
                ids[(long)r * k + j] = best;
                weights[(long)r * k + j] = probs[best];
                chosen += probs[best];
                probs[best] = -1;
            }
            if (normalize)
                for (int j = 0; j < k; j++) weights[(long)r * k + j] /= chosen;
        }
    }

    /// <summary>
    /// One segment of a row of <paramref name="n"/> logits: its largest value, the first index holding it (torch's
    /// argmax), and Σ exp(x - largest); segments combine into a row's log Σ exp (see <see cref="CpuKernels.Normalizers"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SegmentStats(KernelPath path, float* x, int n, out float max, out int argmax, out float sumExp)
    {
        int i = 0;
        max = float.NegativeInfinity;
        if (path >= KernelPath.Avx512 && n >= 16)
        {
            var m = Vector512.Create(float.NegativeInfinity);
            for (; i + 16 <= n; i += 16) m = Vector512.Max(m, Vector512.Load(x + i));
            max = HorizontalMax(m);
        }
        else if (path == KernelPath.Vector256 && n >= 8)
        {
            var m = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= n; i += 8) m = Vector256.Max(m, Vector256.Load(x + i));
            max = HorizontalMax(m);
        }
        for (; i < n; i++) max = MathF.Max(max, x[i]);
        argmax = 0;
        int at = 0;
        if (path >= KernelPath.Avx512)
        {
            var top = Vector512.Create(max);
            while (at + 16 <= n && !Vector512.EqualsAny(Vector512.Load(x + at), top)) at += 16;
        }
        else if (path == KernelPath.Vector256)
        {
            var top = Vector256.Create(max);
            while (at + 8 <= n && !Vector256.EqualsAny(Vector256.Load(x + at), top)) at += 8;
        }
        for (; at < n; at++)
        {
            if (x[at] != max) continue;
            argmax = at;
            break;
        }
        i = 0;
        float sum = 0;
        if (path >= KernelPath.Avx512)
        {
            var top = Vector512.Create(max);
            Vector512<float> a0 = default, a1 = default;
            for (; i + 32 <= n; i += 32)
            {
                a0 += VectorMath.Exp(Vector512.Load(x + i) - top);
                a1 += VectorMath.Exp(Vector512.Load(x + i + 16) - top);
            }
            sum = Vector512.Sum(a0 + a1);
        }
        else if (path == KernelPath.Vector256)
        {
            var top = Vector256.Create(max);
            Vector256<float> a0 = default, a1 = default;
            for (; i + 16 <= n; i += 16)
            {
                a0 += VectorMath.Exp(Vector256.Load(x + i) - top);
                a1 += VectorMath.Exp(Vector256.Load(x + i + 8) - top);
            }
            sum = Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++) sum += MathF.Exp(x[i] - max);
        sumExp = sum;
    }

    internal static float HorizontalMax(Vector512<float> v) => HorizontalMax(Vector256.Max(v.GetLower(), v.GetUpper()));

    internal static float HorizontalMax(Vector256<float> v)
    {
        var m4 = Vector128.Max(v.GetLower(), v.GetUpper());
        float max = m4.GetElement(0);
        for (int j = 1; j < 4; j++) max = MathF.Max(max, m4.GetElement(j));
        return max;
    }

    /// <summary>h = SiLU(g) * u = g / (1 + exp(-g)) * u, element by element (Qwen3's MLP between its two halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SiluTimes(KernelPath path, float* g, float* u, float* h, int n)
    {
        int i = 0;
        if (path >= KernelPath.Avx512)
        {
            for (; i + 16 <= n; i += 16)
            {
                var gv = Vector512.Load(g + i);
                (gv / (Vector512<float>.One + VectorMath.Exp(-gv)) * Vector512.Load(u + i)).Store(h + i);
            }
        }
        else if (path == KernelPath.Vector256)
        {
            for (; i + 8 <= n; i += 8)
            {
                var gv = Vector256.Load(g + i);
                (gv / (Vector256<float>.One + Vector256.Exp(-gv)) * Vector256.Load(u + i)).Store(h + i);
            }
        }
        for (; i < n; i++) h[i] = g[i] / (1f + MathF.Exp(-g[i])) * u[i];
    }

    /// <summary>y += weight * x over <paramref name="n"/> floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddScaled(KernelPath path, float* x, float weight, float* y, int n)
    {
        int i = 0;
        if (path >= KernelPath.Avx512)
        {
            var w = Vector512.Create(weight);
            for (; i + 16 <= n; i += 16) Vector512.FusedMultiplyAdd(Vector512.Load(x + i), w, Vector512.Load(y + i)).Store(y + i);
        }
        else if (path == KernelPath.Vector256)
        {
            var w = Vector256.Create(weight);
            for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + i), w, Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] += weight * x[i];
    }
}
