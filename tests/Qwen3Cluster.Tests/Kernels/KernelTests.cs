using System.Runtime.Intrinsics;
using Qwen3Cluster.Model.Kernels;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Kernels;

/// <summary>Every kernel path this machine has against the plain reference, on shapes that do not fit the vectors.</summary>
public sealed class KernelTests
{
    public static TheoryData<KernelPath> Paths => [.. KernelPaths.Available];

    static Tensor Random(long[] shape, int seed)
    {
        using var generator = new TorchSharp.torch.Generator((ulong)seed);
        return rand(shape, generator: generator) * 2 - 1;
    }

    static MatrixWeight Weight(Tensor values, WeightFormat format) => format switch
    {
        WeightFormat.BF16 => new MatrixWeight(values.to(ScalarType.BFloat16), values.shape[0], values.shape[1]),
        WeightFormat.Q8_0 => new MatrixWeight(MatrixWeight.Quantize(values), values.shape[0], values.shape[1]),
        _ => new MatrixWeight(values.clone(), values.shape[0], values.shape[1]),
    };

    /// <summary>x Wᵀ in double precision from the weights the format holds (bfloat16 or Q8_0 values widened exactly).</summary>
    static double[,] Reference(Tensor x, MatrixWeight w)
    {
        using var wf = w.Dequantized();
        var wv = wf.data<float>().ToArray();
        var xv = x.data<float>().ToArray();
        int m = (int)x.shape[0], k = (int)x.shape[1], n = w.Rows;
        var y = new double[m, n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int c = 0; c < k; c++) sum += (double)xv[i * k + c] * wv[j * k + c];
                y[i, j] = sum;
            }
        }

        return y;
    }

    static void AssertClose(double[,] expected, Tensor actual, double tolerance, string what)
    {
        var a = actual.data<float>().ToArray();
        int n = expected.GetLength(1);
        double scale = 1e-3;
        foreach (double v in expected) scale = Math.Max(scale, Math.Abs(v));
        for (int i = 0; i < expected.GetLength(0); i++)
        {
            for (int j = 0; j < n; j++)
            {
                Assert.True(Math.Abs(expected[i, j] - a[i * n + j]) <= tolerance * scale,
                    $"{what}: y[{i},{j}] = {a[i * n + j]}, expected {expected[i, j]} (tolerance {tolerance * scale})");
            }
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void Float32AndBf16ProductsMatchTheReference(KernelPath path)
    {
        var kernels = new CpuKernels(path);
        foreach (int k in new[] { 1, 31, 33, 96, 512, 1000 })
        {
            foreach (int m in new[] { 1, 2, 3, 4, 5, 6, 9, 14, 16, 17 })
            {
                foreach (var format in new[] { WeightFormat.F32, WeightFormat.BF16 })
                {
                    using var values = Random([37, k], seed: k * 7 + m);
                    using var x = Random([m, k], seed: k + m * 13);
                    var w = Weight(values, format);
                    using var y = kernels.Linear(x, w)[0];
                    AssertClose(Reference(x, w), y, 1e-5, $"{format} {path} M={m} K={k}");
                }
            }
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void Q8ProductsEqualTheScalarPathAndStayNearTheFloatProduct(KernelPath path)
    {
        var kernels = new CpuKernels(path);
        var reference = new CpuKernels(KernelPath.Scalar);
        // Row by row (29 rows, and 40), and eight rows interleaved (40), the layout the VNNI kernel reads.
        foreach (var (rows, interleave) in new[] { (29, false), (40, false), (40, true) })
        {
            foreach (int k in new[] { 32, 96, 1024 })
            {
                foreach (int m in new[] { 1, 2, 4, 6, 7 })
                {
                    using var values = Random([rows, k], seed: k + m);
                    using var x = Random([m, k], seed: 3 * k + m);
                    var w = new MatrixWeight(MatrixWeight.Quantize(values, interleave), rows, k);
                    Assert.Equal(interleave ? WeightFormat.Q8_0x8 : WeightFormat.Q8_0, w.Format);
                    string what = $"{w.Format} {path} K={k} M={m}";
                    using var y = kernels.Linear(x, w)[0];
                    using var scalar = reference.Linear(x, w)[0];
                    // Integer block products are exact; only the float sums of the blocks are ordered differently.
                    var ya = y.data<float>().ToArray();
                    var sa = scalar.data<float>().ToArray();
                    for (int i = 0; i < ya.Length; i++) Assert.True(Math.Abs(ya[i] - sa[i]) <= 1e-5 * Math.Max(1, Math.Abs(sa[i])), $"{what} [{i}]");
                    // Against the product of the dequantised weights and the unquantised activations: the activation's rounding.
                    AssertClose(Reference(x, w), y, 2e-2, what);
                }
            }
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public unsafe void InterleavedQ8OverWholeRowRangesEqualsTheScalarPath(KernelPath path)
    {
        // Ranges of 4 to 13 groups of eight rows, from the first group and from the second: four groups at a time for
        // two tokens, the groups left over one at a time, and an odd last token alone.
        foreach (var (first, last) in new[] { (0, 32), (0, 40), (8, 104), (0, 104) })
        {
            foreach (int k in new[] { 32, 96, 1024 })
            {
                using var values = Random([last, k], seed: 11 * k + last);
                var w = new MatrixWeight(MatrixWeight.Quantize(values, interleave: true), last, k);
                foreach (int m in new[] { 1, 2, 3, 4, 5, 8, 9 })
                {
                    using var x = Random([m, k], seed: 5 * k + m);
                    var fast = Rows(path, w, first, last, x);
                    var scalar = Rows(KernelPath.Scalar, w, first, last, x);
                    for (int i = 0; i < fast.Length; i++)
                    {
                        Assert.True(Math.Abs(fast[i] - scalar[i]) <= 1e-5 * Math.Max(1, Math.Abs(scalar[i])),
                            $"{path} rows [{first}, {last}) K={k} M={m} [{i}]: {fast[i]} against {scalar[i]}");
                    }
                }
            }
        }

        static float[] Rows(KernelPath path, MatrixWeight w, int first, int last, Tensor x)
        {
            int m = (int)x.shape[0], k = (int)x.shape[1], n = last - first;
            var y = new float[m * n];
            var values = x.contiguous().data<float>().ToArray();
            fixed (float* xp = values)
            fixed (float* yp = y)
            {
                var prepared = MatMul.Prepare(path, w.Format, xp, m, k, KernelScratch.ForProduct());
                ProductKernels.Rows(path, w.View, first, last, prepared, 0, m, yp, n);
            }
            return y;
        }
    }

    [Fact]
    public void InterleavedQ8HoldsTheSameBlocksAsRowByRow()
    {
        using var values = Random([24, 96], seed: 17);
        using var rows = new MatrixWeight(MatrixWeight.Quantize(values, interleave: false), 24, 96).Dequantized();
        using var eights = new MatrixWeight(MatrixWeight.Quantize(values, interleave: true), 24, 96).Dequantized();
        Assert.Equal(rows.data<float>().ToArray(), eights.data<float>().ToArray());
    }

    [Theory, MemberData(nameof(Paths))]
    public unsafe void VectorActivationQuantisationEqualsTheScalarOneBitForBit(KernelPath path)
    {
        if (path == KernelPath.Scalar) return;
        const int k = 32 * 40;
        var rng = new Random(5);
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 100 : 1);
        // Exact ties: a block whose largest magnitude is 127 has scale 1, so its halves round away from zero.
        for (int i = 0; i < 32; i++) x[i] = i == 0 ? 127 : (i % 2 == 0 ? 1 : -1) * (i + 0.5f);
        for (int i = 32; i < 64; i++) x[i] = 0; // an all-zero block: scale 0
        var qs = new sbyte[k];
        var qv = new sbyte[k];
        var ss = new float[k / 32];
        var sv = new float[k / 32];
        fixed (float* px = x, pss = ss, psv = sv)
        fixed (sbyte* pqs = qs, pqv = qv)
        {
            Q8.QuantizeActivation(px, k, pqs, pss);
            if (path >= KernelPath.Avx512) Q8.QuantizeActivationAvx512(px, k, pqv, psv);
            else Q8.QuantizeActivationVector256(px, k, pqv, psv);
        }
        Assert.Equal(ss, sv);
        Assert.Equal(qs, qv);
        Assert.Equal(3, qs[2]);  // 2.5 -> 3, away from zero (to even would give 2)
        Assert.Equal(-4, qs[3]); // -3.5 -> -4
    }

    [Fact]
    public void QuantisedWeightsDecodeWithinHalfAStepOfTheirValues()
    {
        using var values = Random([5, 64], seed: 11);
        var w = Weight(values, WeightFormat.Q8_0);
        using var back = w.Dequantized();
        var v = values.data<float>().ToArray();
        var b = back.data<float>().ToArray();
        for (int r = 0; r < 5; r++)
        {
            for (int block = 0; block < 2; block++)
            {
                float amax = Enumerable.Range(0, 32).Max(i => Math.Abs(v[r * 64 + block * 32 + i]));
                for (int i = 0; i < 32; i++)
                {
                    int at = r * 64 + block * 32 + i;
                    // d is rounded to float16 (relative error 2^-11), so the step is d, give or take that.
                    Assert.InRange(b[at] - v[at], -amax / 127 * 0.51 - 1e-3 * amax, amax / 127 * 0.51 + 1e-3 * amax);
                }
            }
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void GatedMlpAndExpertsMatchTorch(KernelPath path)
    {
        var kernels = new CpuKernels(path);
        var torchKernels = TorchKernels.Shared;
        foreach (var format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.Q8_0 })
        {
            const int d = 64, inner = 96, experts = 6, lo = 1, hi = 5, tokens = 9, topK = 2;
            MatrixWeight[] Matrices(int rows, int cols, int seed) =>
                Enumerable.Range(0, hi - lo).Select(e => Weight(Random([rows, cols], seed + e) * 0.3f, format)).ToArray();
            var group = new ExpertWeights(lo, hi, Matrices(inner, d, 100), Matrices(inner, d, 200), Matrices(d, inner, 300));
            using var x = Random([tokens, d], seed: 5);
            using var ids = randint(0, experts, [tokens, topK], dtype: ScalarType.Int64, generator: new TorchSharp.torch.Generator(9));
            using var routing = Random([tokens, topK], seed: 6).abs();
            // Q8 rounds the activations, the torch path does not: its tolerance is the rounding's.
            double tolerance = format == WeightFormat.Q8_0 ? 3e-2 : 1e-4;
            using var mlp = kernels.GatedMlp(x, group.Gate[0], group.Up[0], group.Down[0]);
            using var mlpReference = torchKernels.GatedMlp(x, group.Gate[0], group.Up[0], group.Down[0]);
            AssertAllClose(mlpReference, mlp, tolerance, $"MLP {format} {path}");
            using var moe = kernels.Experts(x, ids, routing, group);
            using var moeReference = torchKernels.Experts(x, ids, routing, group);
            AssertAllClose(moeReference, moe, tolerance, $"experts {format} {path}");
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void NormsAndRoutingMatchTorch(KernelPath path)
    {
        var kernels = new CpuKernels(path);
        foreach (int d in new[] { 1, 24, 40, 1024 })
        {
            using var x = Random([5, d], seed: d);
            using var weight = Random([d], seed: d + 1);
            using var norm = kernels.RmsNorm(x, weight, 1e-6);
            using var reference = TorchKernels.Shared.RmsNorm(x, weight, 1e-6);
            AssertAllClose(reference, norm, 1e-5, $"RMSNorm D={d} {path}");
        }
        foreach (bool normalize in new[] { true, false })
        {
            using var x = Random([7, 48], seed: 21);
            var gate = Weight(Random([12, 48], seed: 22), WeightFormat.F32);
            using var routing = kernels.Route(x, gate, 3, normalize);
            using var reference = TorchKernels.Shared.Route(x, gate, 3, normalize);
            Assert.Equal(reference.ExpertIds.data<long>().ToArray(), routing.ExpertIds.data<long>().ToArray());
            AssertAllClose(reference.Weights, routing.Weights, 1e-5, $"routing weights {path}");
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public void ArgmaxAndLogSumExpMatchTorch(KernelPath path)
    {
        var kernels = new CpuKernels(path);
        foreach (int v in new[] { 1, 7, 16, 33, 1000, 151936 })
        {
            using var logits = Random([3, v], seed: v) * 20;
            // Row 1 holds its largest value twice (the first is the argmax) and masked entries, as a constraint leaves them.
            logits[1, v - 1] = tensor(100f);
            logits[1, v / 2] = tensor(100f);
            if (v > 2) logits[1, 0] = tensor(float.NegativeInfinity);
            var (argmax, logSumExp) = kernels.Normalizers(logits);
            var (torchArgmax, torchLogSumExp) = TorchKernels.Shared.Normalizers(logits);
            Assert.Equal(torchArgmax, argmax);
            for (int i = 0; i < 3; i++) Assert.True(Math.Abs(torchLogSumExp[i] - logSumExp[i]) <= 1e-5 * Math.Max(1, Math.Abs(torchLogSumExp[i])), $"V={v} row {i} {path}");
        }
    }

    [Theory, MemberData(nameof(Paths))]
    public unsafe void VectorExpIsWithinTwoUlpOfTheExactValue(KernelPath path)
    {
        if (path == KernelPath.Scalar) return;
        var x = new float[16];
        // The 8-wide one holds x to 88 at most (e^88 above it).
        for (double start = -87; start < (path >= KernelPath.Avx512 ? 88 : 87.8); start += 16 * 0.0137)
        {
            for (int i = 0; i < 16; i++) x[i] = (float)(start + i * 0.0137);
            var e = new float[16];
            fixed (float* p = x, pe = e)
            {
                if (path >= KernelPath.Avx512)
                {
                    VectorMath.Exp(Vector512.Load(p)).Store(pe);
                }
                else
                {
                    VectorMath.Exp(Vector256.Load(p)).Store(pe);
                    VectorMath.Exp(Vector256.Load(p + 8)).Store(pe + 8);
                }
            }
            for (int i = 0; i < 16; i++)
            {
                double exact = Math.Exp(x[i]);
                Assert.True(Math.Abs(e[i] - exact) <= 2.5e-7 * exact, $"{path}: exp({x[i]}) = {e[i]}, exactly {exact}");
            }
        }
    }

    static void AssertAllClose(Tensor expected, Tensor actual, double tolerance, string what)
    {
        var e = expected.data<float>().ToArray();
        var a = actual.data<float>().ToArray();
        Assert.Equal(e.Length, a.Length);
        double scale = Math.Max(1e-3, e.Max(Math.Abs));
        for (int i = 0; i < e.Length; i++) Assert.True(Math.Abs(e[i] - a[i]) <= tolerance * scale, $"{what}[{i}]: {a[i]} vs {e[i]}");
    }
}

public sealed class ThreadTeamTests
{
    sealed class Counting(int chunks) : TeamJob
    {
        public readonly int[] Runs = new int[chunks];

        public override void Execute(int chunk) => Interlocked.Increment(ref Runs[chunk]);
    }

    [Fact]
    public async Task EveryChunkRunsExactlyOnceWhoeverCalls()
    {
        using var team = new ThreadTeam(3);
        var jobs = new List<Counting>();
        var callers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (int r = 0; r < 200; r++)
            {
                var job = new Counting(1 + r % 37);
                team.Run(job.Runs.Length, job);
                lock (jobs) jobs.Add(job);
            }
        })).ToArray();
        // A lost wake-up would hang the team: two minutes is far beyond the milliseconds this takes.
        await Task.WhenAll(callers).WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal(800, jobs.Count);
        Assert.All(jobs, job => Assert.All(job.Runs, runs => Assert.Equal(1, runs)));
    }
}
