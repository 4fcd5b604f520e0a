using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
namespace Qwen3Cluster.Model.Kernels;

/// <summary>One product of a step: weights W [N, K] against the prepared x [M, K], into y [M, N] at row stride Ldy.</summary>
public readonly unsafe struct ProductTarget(WeightView weights, float* output, int outputStride)
{
    public WeightView Weights { get; } = weights;
    public float* Output { get; } = output;
    public int OutputStride { get; } = outputStride;
}

/// <summary>
/// Matrix products over resident weights, decode and prefill alike: y = x Wᵀ, row by row (ggml's shape), chunks of
/// weight rows shared out over the thread team, every chunk's rows read once for all M tokens. Several products of
/// one input (q, k and v) run as one job; gate and up run paired, with SiLU(gate) * up written straight out.
/// </summary>
public static unsafe class MatMul
{
    /// <summary>x [M, K] float32, made ready for weights of <paramref name="format"/> in this thread's scratch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static PreparedInput Prepare(KernelPath path, WeightFormat format, float* x, int m, int k, KernelScratch scratch)
    {
        switch (format)
        {
            case WeightFormat.Q8_0:
            case WeightFormat.Q8_0x8:
            {
                if (k % WeightFormats.Q8Block != 0) throw new ArgumentException($"Q8_0 needs K a multiple of 32, got {k}.");
                sbyte* q = scratch.Take<sbyte>((long)m * k);
                float* scales = scratch.Take<float>((long)m * (k / WeightFormats.Q8Block));
                bool vnni = path == KernelPath.Avx512Vnni;
                int* offsets = vnni ? scratch.Take<int>((long)m * (k / 4)) : null;
                int* blockSums = vnni ? scratch.Take<int>((long)m * (k / WeightFormats.Q8Block)) : null;
                var prepared = new PreparedInput(null, q, scales, offsets, blockSums, m, k);
                for (int t = 0; t < m; t++)
                {
                    if (path >= KernelPath.Avx512) Q8.QuantizeActivationAvx512(x + (long)t * k, k, prepared.QuantizedRow(t), prepared.ScaleRow(t));
                    else if (path == KernelPath.Vector256) Q8.QuantizeActivationVector256(x + (long)t * k, k, prepared.QuantizedRow(t), prepared.ScaleRow(t));
                    else Q8.QuantizeActivation(x + (long)t * k, k, prepared.QuantizedRow(t), prepared.ScaleRow(t));
                    if (vnni) Q8.Offsets(prepared.QuantizedRow(t), k, prepared.OffsetRow(t), prepared.BlockSumRow(t));
                }
                return prepared;
            }
            case WeightFormat.BF16 when path != KernelPath.Scalar:
            {
                float* permuted = scratch.Take<float>((long)m * k);
                int chunks = k / 32;
                for (int t = 0; t < m; t++)
                {
                    float* src = x + (long)t * k, dst = permuted + (long)t * k;
                    int c = 0;
                    if (path >= KernelPath.Avx512)
                    {
                        // Two-source permutes: evens of the 32 values, then odds.
                        var evens = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                        var odds = evens + Vector512<int>.One;
                        for (; c < chunks; c++)
                        {
                            var lo = Avx512F.LoadVector512(src + c * 32);
                            var hi = Avx512F.LoadVector512(src + c * 32 + 16);
                            Avx512F.PermuteVar16x32x2(lo, evens, hi).Store(dst + c * 32);
                            Avx512F.PermuteVar16x32x2(lo, odds, hi).Store(dst + c * 32 + 16);
                        }
                    }
                    else if (path == KernelPath.Vector256)
                    {
                        // Within each 128-bit lane: evens then odds of its four pairs; then the 64-bit quarters in order.
                        for (; c < chunks; c++)
                        {
                            for (int half = 0; half < 32; half += 16)
                            {
                                var a = Avx.LoadVector256(src + c * 32 + half);
                                var b = Avx.LoadVector256(src + c * 32 + half + 8);
                                var evens = Avx.Shuffle(a, b, 0b10_00_10_00).AsDouble();
                                var odds = Avx.Shuffle(a, b, 0b11_01_11_01).AsDouble();
                                Avx2.Permute4x64(evens, 0b11_01_10_00).AsSingle().Store(dst + c * 32 + half / 2);
                                Avx2.Permute4x64(odds, 0b11_01_10_00).AsSingle().Store(dst + c * 32 + 16 + half / 2);
                            }
                        }
                    }
                    for (; c < chunks; c++)
                    {
                        for (int j = 0; j < 16; j++)
                        {
                            dst[c * 32 + j] = src[c * 32 + 2 * j];
                            dst[c * 32 + 16 + j] = src[c * 32 + 2 * j + 1];
                        }
                    }
                    for (int i = chunks * 32; i < k; i++) dst[i] = src[i];
                }
                return new PreparedInput(permuted, m, k);
            }
            default:
                return new PreparedInput(x, m, k);
        }
    }

    /// <summary>
    /// Rows per chunk: enough chunks for every thread to take several, not so many that handing them out costs; a
    /// multiple of eight, so a chunk of interleaved Q8_0 holds whole groups.
    /// </summary>
    static int RowsPerChunk(long rows, int threads) => (int)Math.Clamp(rows / (threads * 8L) / 8 * 8, 8, 256);

    /// <summary>y_i = x W_iᵀ for every target i (all of the same format, against the same prepared x).</summary>
    public static void Run(ThreadTeam team, KernelPath path, in PreparedInput x, ProductTarget[] targets)
    {
        var job = new ProductJob(path, x, targets, RowsPerChunk(targets.Sum(t => (long)t.Weights.Rows), team.Threads));
        team.Run(job.Chunks, job);
    }

    /// <summary>h [M, I] = SiLU(x Gᵀ) * (x Uᵀ) for gate and up [I, K]: Qwen3's MLP input half in one pass.</summary>
    public static void RunGated(ThreadTeam team, KernelPath path, in PreparedInput x, WeightView gate, WeightView up, float* h, int stride)
    {
        var job = new GatedJob(path, x, gate, up, h, stride, RowsPerChunk(gate.Rows, team.Threads));
        team.Run(job.Chunks, job);
    }

    sealed class ProductJob : TeamJob
    {
        readonly KernelPath _path;
        readonly PreparedInput _x;
        readonly ProductTarget[] _targets;
        readonly int[] _firstChunk;
        readonly int _rowsPerChunk;

        public ProductJob(KernelPath path, in PreparedInput x, ProductTarget[] targets, int rowsPerChunk)
        {
            _path = path;
            _x = x;
            _targets = targets;
            _rowsPerChunk = rowsPerChunk;
            _firstChunk = new int[targets.Length + 1];
            for (int i = 0; i < targets.Length; i++)
                _firstChunk[i + 1] = _firstChunk[i] + (targets[i].Weights.Rows + rowsPerChunk - 1) / rowsPerChunk;
        }

        public int Chunks => _firstChunk[^1];

        public override void Execute(int chunk)
        {
            int i = 0;
            while (chunk >= _firstChunk[i + 1]) i++;
            var target = _targets[i];
            var w = target.Weights;
            int first = (chunk - _firstChunk[i]) * _rowsPerChunk;
            int last = Math.Min(first + _rowsPerChunk, w.Rows);
            ProductKernels.Rows(_path, w, first, last, _x, 0, _x.M, target.Output + first, target.OutputStride);
        }
    }

    sealed class GatedJob(KernelPath path, PreparedInput x, WeightView gate, WeightView up, float* h, int stride, int rowsPerChunk) : TeamJob
    {
        public int Chunks => (gate.Rows + rowsPerChunk - 1) / rowsPerChunk;

        public override void Execute(int chunk)
        {
            int first = chunk * rowsPerChunk, last = Math.Min(first + rowsPerChunk, gate.Rows);
            Gated(path, x, gate, up, first, last, h + first, stride);
        }
    }

    /// <summary>
    /// h[t, r] = SiLU(x[t] · G[r]) * (x[t] · U[r]) for rows [first, last) and every token of x, written at
    /// h[t * stride + r - first]: gate and up rows of a block of tokens into this thread's tile, then the epilogue.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Gated(KernelPath path, in PreparedInput x, in WeightView gate, in WeightView up, int first, int last, float* h, long stride)
    {
        int n = last - first;
        float* g = ChunkTile.Take(2L * n * ChunkTile.Tokens);
        float* u = g + (long)n * ChunkTile.Tokens;
        for (int t0 = 0; t0 < x.M; t0 += ChunkTile.Tokens)
        {
            int t1 = Math.Min(x.M, t0 + ChunkTile.Tokens);
            ProductKernels.Rows(path, gate, first, last, x, t0, t1, g, n);
            ProductKernels.Rows(path, up, first, last, x, t0, t1, u, n);
            for (int t = t0; t < t1; t++) RowOps.SiluTimes(path, g + (long)(t - t0) * n, u + (long)(t - t0) * n, h + t * stride, n);
        }
    }
}
