using System.Runtime.CompilerServices;
namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// A layer's experts in two passes over the team, with no host round trip per expert (SGLang's CPU MoE shape): the
/// (token, slot) pairs are bucketed by expert once; pass one shares out every expert's gate and up rows, writing
/// SiLU(gate) * up for its tokens; pass two shares out the output rows, and each output row sums, over every
/// expert, the weighted down projection of that expert's tokens, so no two threads write one value.
/// </summary>
public static unsafe class ExpertKernel
{
    /// <param name="x">Tokens [M, D].</param>
    /// <param name="ids">Routed expert ids [M, K] (global; those outside the group are skipped).</param>
    /// <param name="routing">Routing weights [M, K].</param>
    /// <param name="output">y [M, D], zeroed, to which the group adds its experts' weighted outputs.</param>
    public static void Run(ThreadTeam team, KernelPath path, float* x, int m, int d, long* ids, int k, float* routing,
        ExpertWeights experts, float* output, KernelScratch scratch)
    {
        int count = experts.Hi - experts.Lo;
        var tokens = new List<int>[count];
        var weights = new List<float>[count];
        for (int i = 0; i < m * k; i++)
        {
            long e = ids[i];
            if (e < experts.Lo || e >= experts.Hi) continue;
            int local = (int)(e - experts.Lo);
            (tokens[local] ??= []).Add(i / k);
            (weights[local] ??= []).Add(routing[i]);
        }
        var active = Enumerable.Range(0, count).Where(e => tokens[e] is { Count: > 0 }).ToArray();
        if (active.Length == 0) return;

        var format = experts.Gate[active[0]].Format;
        int inner = experts.Gate[active[0]].Rows;
        var all = MatMul.Prepare(path, format, x, m, d, scratch);
        var routed = new Routed[active.Length];
        for (int a = 0; a < active.Length; a++)
        {
            int e = active[a];
            int n = tokens[e].Count;
            routed[a] = new Routed(e, tokens[e].ToArray(), weights[e].ToArray(), Gather(all, tokens[e], format, scratch), scratch.Take<float>((long)n * inner));
        }
        int gateUpRows = RowsPerChunk((long)routed.Length * inner, team.Threads);
        team.Run(routed.Length * Chunks(inner, gateUpRows), new GateUpJob(path, experts, routed, inner, gateUpRows));
        foreach (var r in routed) r.Down = MatMul.Prepare(path, experts.Down[r.Expert].Format, r.Hidden, r.Tokens.Length, inner, scratch);
        int downRows = RowsPerChunk(d, team.Threads);
        team.Run(Chunks(d, downRows), new DownJob(path, experts, routed, d, downRows, output));
    }

    /// <summary>
    /// Rows a chunk takes: at least four chunks a thread over the pass, 32 to 128 rows. Each chunk starts a new stream
    /// of weights from memory; a bench-moe decode step's experts took 5.2-5.3 ms in 128-row chunks against 5.6 in
    /// 32-row ones on a 2-core Zen VM, and more threads still get enough chunks to share.
    /// </summary>
    static int RowsPerChunk(long rows, int threads) => (int)Math.Clamp(rows / (4L * threads) / 32 * 32, 32, 128);

    static int Chunks(int rows, int rowsPerChunk) => (rows + rowsPerChunk - 1) / rowsPerChunk;

    /// <summary>The prepared rows of <paramref name="tokens"/>, contiguous.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static PreparedInput Gather(in PreparedInput all, List<int> tokens, WeightFormat format, KernelScratch scratch)
    {
        int n = tokens.Count, k = all.K;
        if (format.IsQ8())
        {
            int blocks = k / WeightFormats.Q8Block;
            sbyte* q = scratch.Take<sbyte>((long)n * k);
            float* s = scratch.Take<float>((long)n * blocks);
            int* o = all.Offsets == null ? null : scratch.Take<int>((long)n * (k / 4));
            int* sums = all.BlockSums == null ? null : scratch.Take<int>((long)n * blocks);
            var gathered = new PreparedInput(null, q, s, o, sums, n, k);
            for (int i = 0; i < n; i++)
            {
                Buffer.MemoryCopy(all.QuantizedRow(tokens[i]), gathered.QuantizedRow(i), k, k);
                Buffer.MemoryCopy(all.ScaleRow(tokens[i]), gathered.ScaleRow(i), blocks * sizeof(float), blocks * sizeof(float));
                if (o != null) Buffer.MemoryCopy(all.OffsetRow(tokens[i]), gathered.OffsetRow(i), k, k);
                if (sums != null) Buffer.MemoryCopy(all.BlockSumRow(tokens[i]), gathered.BlockSumRow(i), blocks * sizeof(int), blocks * sizeof(int));
            }
            return gathered;
        }
        float* values = scratch.Take<float>((long)n * k);
        for (int i = 0; i < n; i++) Buffer.MemoryCopy(all.Row(tokens[i]), values + (long)i * k, k * sizeof(float), k * sizeof(float));
        return new PreparedInput(values, n, k);
    }

    /// <summary>One expert's share: its tokens and their routing weights, their prepared input, SiLU(gate) * up, and that made ready for down.</summary>
    sealed class Routed(int expert, int[] tokens, float[] weights, PreparedInput input, float* hidden)
    {
        public int Expert { get; } = expert;
        public int[] Tokens { get; } = tokens;
        public float[] Weights { get; } = weights;
        public PreparedInput Input { get; } = input;
        public float* Hidden { get; } = hidden;
        public PreparedInput Down { get; set; }
    }

    sealed class GateUpJob(KernelPath path, ExpertWeights experts, Routed[] routed, int inner, int rowsPerChunk) : TeamJob
    {
        readonly int _chunksPerExpert = Chunks(inner, rowsPerChunk);

        public override void Execute(int chunk)
        {
            var r = routed[chunk / _chunksPerExpert];
            int first = chunk % _chunksPerExpert * rowsPerChunk, last = Math.Min(first + rowsPerChunk, inner);
            MatMul.Gated(path, r.Input, experts.Gate[r.Expert].View, experts.Up[r.Expert].View, first, last, r.Hidden + first, inner);
        }
    }

    sealed class DownJob(KernelPath path, ExpertWeights experts, Routed[] routed, int d, int rowsPerChunk, float* output) : TeamJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int chunk)
        {
            int first = chunk * rowsPerChunk, last = Math.Min(first + rowsPerChunk, d), n = last - first;
            float* dots = ChunkTile.Take((long)n * ChunkTile.Tokens);
            foreach (var r in routed)
            {
                var down = experts.Down[r.Expert].View;
                for (int t0 = 0; t0 < r.Tokens.Length; t0 += ChunkTile.Tokens)
                {
                    int t1 = Math.Min(r.Tokens.Length, t0 + ChunkTile.Tokens);
                    ProductKernels.Rows(path, down, first, last, r.Down, t0, t1, dots, n);
                    for (int t = t0; t < t1; t++) RowOps.AddScaled(path, dots + (long)(t - t0) * n, r.Weights[t], output + (long)r.Tokens[t] * d + first, n);
                }
            }
        }
    }
}
