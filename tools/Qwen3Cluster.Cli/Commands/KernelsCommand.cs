using System.CommandLine;
using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Text.Json;
using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Kernels;
using Qwen3Cluster.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Cli.Commands;

/// <summary>
/// <c>qwen3 kernels</c>: the machine's read bandwidth (a STREAM-like sum over 1 GiB on the thread team) and what the
/// matrix kernels reach on it: decode products (one token) per weight format as a fraction of that bandwidth, the
/// same product on weights that fit in the last-level cache (what the kernel's arithmetic allows: when it is not
/// well above the bandwidth, that format is bound by the kernel, not by memory), prefill products (128 tokens)
/// in GFLOP/s beside libtorch's float32 GEMM, and decode attention's walk over the paged KV pool (the keys and values
/// one decode token reads, at 512 and 2048 tokens of context, and for 16 streams at 2048).
/// </summary>
public static class KernelsCommand
{
    public static Command Create()
    {
        var threads = new Option<int?>("--threads") { Description = "Kernel threads (default: one per core)" };
        var json = new Option<bool>("--json") { Description = "Print the results as JSON" };
        var bandwidthOnly = new Option<bool>("--bandwidth") { Description = "Measure the read bandwidth only (a second or two)" };
        var attentionOnly = new Option<bool>("--attention") { Description = "Measure the read bandwidth and decode attention only" };
        var command = new Command("kernels", "Measure read bandwidth and the CPU matrix kernels") { threads, json, bandwidthOnly, attentionOnly };
        command.SetAction(parse =>
        {
            int n = parse.GetValue(threads) ?? Environment.ProcessorCount;
            ComputeThreads.Configure(n);
            var report = parse.GetValue(bandwidthOnly)
                ? new Report(n, KernelPaths.Best.ToString(), Math.Round(ReadBandwidth(), 1), 0, 0, [], null)
                : Run(n, parse.GetValue(attentionOnly));
            if (parse.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
            else Print(report);
            return 0;
        });
        return command;
    }

    public sealed record FormatResult(string Format, double DecodeGBps, double DecodeFractionOfBandwidth, double DecodeCachedGBps, double PrefillGflops,
        double MoeDecodeGBps, double MoePrefillGflops);

    /// <summary>Decode attention over the paged pool from memory: one token's read of its keys and values, and the time a layer's heads take.</summary>
    public sealed record AttentionResult(int Context, int Streams, double Microseconds, double GBps, double FractionOfBandwidth);

    public sealed record Report(int Threads, string Path, double ReadGBps, double TorchPrefillGflops, double TorchBf16PrefillGflops,
        IReadOnlyList<FormatResult> Formats, IReadOnlyList<AttentionResult>? Attention, double PeakGflops = 0);

    static Report Run(int threads, bool attentionOnly)
    {
        double bandwidth = ReadBandwidth();
        Terminal.Info($"read bandwidth: {bandwidth:F1} GB/s with {threads} thread(s)");
        double peak = PeakGflops();
        Terminal.Info($"float32 multiply-add peak: {peak:F1} GFLOP/s with {threads} thread(s)");
        var attention = new List<AttentionResult>();
        foreach (var (context, streams) in new[] { (512, 1), (2048, 1), (2048, 16) })
        {
            var (seconds, bytes) = DecodeAttention(context, streams);
            double gbps = bytes / seconds / 1e9;
            attention.Add(new AttentionResult(context, streams, Math.Round(seconds * 1e6, 1), Math.Round(gbps, 1), Math.Round(gbps / bandwidth, 3)));
            Terminal.Info($"decode attention, {streams} stream(s) at {context} tokens: {seconds * 1e6:F0} us a layer, {gbps:F1} GB/s of keys and values ({gbps / bandwidth:P0} of the bandwidth)");
        }
        if (attentionOnly) return new Report(threads, KernelPaths.Best.ToString(), Math.Round(bandwidth, 1), 0, 0, [], attention, Math.Round(peak, 1));
        var results = new List<FormatResult>();
        foreach (var format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.Q8_0 })
        {
            // Decode: 512 MiB of weights whatever their width (16 times the last-level cache), one token.
            int decodeRows = (int)((512L << 20) / WeightFormats.RowBytes(format, 1024));
            var (decodeSeconds, bytes) = Product(format, rows: decodeRows, cols: 1024, tokens: 1, repeats: 5);
            // The same from cache: 2048 x 1024 weights (8 MiB at float32, within a 32 MiB L3), many times.
            var (cachedSeconds, cachedBytes) = Product(format, rows: 2048, cols: 1024, tokens: 1, repeats: 200);
            // Prefill: 2048 x 1024 weights (in cache), 128 tokens.
            var (prefillSeconds, _) = Product(format, rows: 2048, cols: 1024, tokens: 128, repeats: 5);
            double gbps = bytes / decodeSeconds / 1e9, cached = cachedBytes / cachedSeconds / 1e9;
            double gflops = 2.0 * 128 * 2048 * 1024 / prefillSeconds / 1e9;
            // A bench-moe layer's experts (32 of 512 x 1024, top 4): one token, and a 128-token prompt.
            var (moeDecodeSeconds, moeBytes) = Experts(format, tokens: 1, repeats: 50);
            var (moePrefillSeconds, _) = Experts(format, tokens: 128, repeats: 5);
            double moeGbps = moeBytes / moeDecodeSeconds / 1e9, moeGflops = 2.0 * 3 * 512 * 1024 * 4 * 128 / moePrefillSeconds / 1e9;
            results.Add(new FormatResult(format.ToString(), Math.Round(gbps, 1), Math.Round(gbps / bandwidth, 3), Math.Round(cached, 1), Math.Round(gflops, 1),
                Math.Round(moeGbps, 1), Math.Round(moeGflops, 1)));
            Terminal.Info($"{format}: decode {gbps:F1} GB/s ({gbps / bandwidth:P0} of the bandwidth; {cached:F1} GB/s from cache), prefill {gflops:F1} GFLOP/s; " +
                $"experts: decode {moeGbps:F1} GB/s, prefill {moeGflops:F1} GFLOP/s");
        }
        // libtorch is measured with as many threads as the team (the engine itself keeps it to one).
        torch.set_num_threads(threads);
        double torchGflops = TorchPrefill(ScalarType.Float32, rows: 2048, cols: 1024, tokens: 128, repeats: 5);
        Terminal.Info($"libtorch float32 GEMM: prefill {torchGflops:F1} GFLOP/s");
        // bfloat16 weights and activations (oneDNN, with AVX512-BF16 where the CPU has it): the fast path a bf16
        // prefill could take at the price of rounding the activations to bfloat16.
        double torchBf16Gflops = TorchPrefill(ScalarType.BFloat16, rows: 2048, cols: 1024, tokens: 128, repeats: 5);
        Terminal.Info($"libtorch bfloat16 GEMM: prefill {torchBf16Gflops:F1} GFLOP/s");
        return new Report(threads, KernelPaths.Best.ToString(), Math.Round(bandwidth, 1), Math.Round(torchGflops, 1), Math.Round(torchBf16Gflops, 1), results, attention,
            Math.Round(peak, 1));
    }

    static unsafe double ReadBandwidth()
    {
        const long floats = 1L << 28; // 1 GiB
        float* data = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
        // The weights live on 2 MiB pages where the system allows (HugePages): the roofline is measured on the same.
        HugePages.Advise(data, floats * 4);
        try
        {
            for (long i = 0; i < floats; i++) data[i] = 1f;
            double best = double.MaxValue;
            // The roofline is the faster of a plain read and one that asks ahead as the kernels do, best of five each.
            foreach (bool prefetch in new[] { false, true })
            {
                var job = new SumJob(data, floats, chunks: 256, prefetch && System.Runtime.Intrinsics.X86.Sse.IsSupported);
                for (int r = 0; r < 5; r++)
                {
                    var clock = Stopwatch.StartNew();
                    ThreadTeam.Shared.Run(256, job);
                    best = Math.Min(best, clock.Elapsed.TotalSeconds);
                }
            }
            return floats * 4 / best / 1e9;
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(data);
        }
    }

    /// <summary>
    /// The compute roofline: float32 multiply-adds on registers only, on the widest vectors the machine runs natively
    /// (512, 256 or 128 bits), ten independent chains per thread so the adds' latency is hidden, one chunk per team
    /// thread: the best of five, in GFLOP/s (a multiply-add counts two). What a product bound by arithmetic, not by
    /// memory (a prefill, a batch of many streams), can approach.
    /// </summary>
    static double PeakGflops()
    {
        int threads = ThreadTeam.Shared.Threads;
        var job = new FmaJob(iterations: 2_000_000);
        double best = double.MaxValue;
        for (int r = 0; r < 6; r++)
        {
            var clock = Stopwatch.StartNew();
            ThreadTeam.Shared.Run(threads, job);
            if (r > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return threads * job.FlopsPerChunk / best / 1e9;
    }

    sealed class FmaJob(int iterations) : TeamJob
    {
        public float Sink;

        // The width the kernels run (KernelPaths): the JIT reports Vector512 as not accelerated on some AVX-512 CPUs
        // (those that lower their clock for it), where the kernels still take the 512-bit path.
        static readonly int Lanes = KernelPaths.Best >= KernelPath.Avx512 ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;

        public double FlopsPerChunk => 2.0 * 10 * Lanes * iterations;

        public override void Execute(int chunk) => Sink += Lanes switch
        {
            16 => Chains<Vector512<float>, Wide>(Vector512.Create(1f), Vector512.Create(0.999f)),
            8 => Chains<Vector256<float>, Half>(Vector256.Create(1f), Vector256.Create(0.999f)),
            _ => Chains<Vector128<float>, Quarter>(Vector128.Create(1f), Vector128.Create(0.999f)),
        };

        /// <summary>Ten independent chains a += a·m, x per lane; the struct's static methods compile to one width's instructions.</summary>
        float Chains<TVector, TOps>(TVector x, TVector m) where TOps : struct, IVectorOps<TVector>
        {
            TVector a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x;
            for (int i = 0; i < iterations; i++)
            {
                a0 = TOps.Fma(a0, m, x);
                a1 = TOps.Fma(a1, m, x);
                a2 = TOps.Fma(a2, m, x);
                a3 = TOps.Fma(a3, m, x);
                a4 = TOps.Fma(a4, m, x);
                a5 = TOps.Fma(a5, m, x);
                a6 = TOps.Fma(a6, m, x);
                a7 = TOps.Fma(a7, m, x);
                a8 = TOps.Fma(a8, m, x);
                a9 = TOps.Fma(a9, m, x);
            }
            return TOps.Sum(a0) + TOps.Sum(a1) + TOps.Sum(a2) + TOps.Sum(a3) + TOps.Sum(a4) + TOps.Sum(a5) + TOps.Sum(a6) + TOps.Sum(a7)
                + TOps.Sum(a8) + TOps.Sum(a9);
        }
    }

    interface IVectorOps<TVector>
    {
        static abstract TVector Fma(TVector a, TVector b, TVector c);
        static abstract float Sum(TVector v);
    }

    readonly struct Wide : IVectorOps<Vector512<float>>
    {
        public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
        public static float Sum(Vector512<float> v) => Vector512.Sum(v);
    }

    readonly struct Half : IVectorOps<Vector256<float>>
    {
        public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
        public static float Sum(Vector256<float> v) => Vector256.Sum(v);
    }

    readonly struct Quarter : IVectorOps<Vector128<float>>
    {
        public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
        public static float Sum(Vector128<float> v) => Vector128.Sum(v);
    }

    /// <summary>A sum over the buffer in chunks, plain or asking for each line 4 KiB ahead as the kernels do.</summary>
    sealed unsafe class SumJob(float* data, long count, int chunks, bool prefetch) : TeamJob
    {
        public float Sink;

        public override void Execute(int chunk)
        {
            long per = count / chunks;
            float* p = data + chunk * per;
            if (!Vector512.IsHardwareAccelerated)
            {
                // Without AVX-512, Vector512 is emulated in software: it would measure that, not the memory.
                Sink += Sum256(p, per);
                return;
            }
            Vector512<float> a = default, b = default, c = default, d = default;
            for (long i = 0; i < per; i += 64)
            {
                if (prefetch)
                {
                    for (int line = 0; line < 256; line += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0((byte*)(p + i) + 4096 + line);
                }
                a += Vector512.Load(p + i);
                b += Vector512.Load(p + i + 16);
                c += Vector512.Load(p + i + 32);
                d += Vector512.Load(p + i + 48);
            }
            Sink += Vector512.Sum(a + b + c + d);
        }

        float Sum256(float* p, long per)
        {
            Vector256<float> a = default, b = default, c = default, d = default;
            for (long i = 0; i < per; i += 64)
            {
                if (prefetch)
                {
                    for (int line = 0; line < 256; line += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0((byte*)(p + i) + 4096 + line);
                }
                a += Vector256.Load(p + i) + Vector256.Load(p + i + 8);
                b += Vector256.Load(p + i + 16) + Vector256.Load(p + i + 24);
                c += Vector256.Load(p + i + 32) + Vector256.Load(p + i + 40);
                d += Vector256.Load(p + i + 48) + Vector256.Load(p + i + 56);
            }
            return Vector256.Sum(a + b + c + d);
        }
    }

    /// <summary>
    /// One decode step's attention for a bench-moe layer (16 query heads, 4 KV heads of 64) over <paramref name="streams"/>
    /// sequences of <paramref name="context"/> cached tokens each, their blocks of 16 scattered over a pool of 256 MiB or
    /// more (as a serving pool's are after requests come and go). Each repeat reads keys and values no earlier repeat
    /// read (another layer of the pool, or another set of its blocks), so they come from memory whatever the size of the
    /// last-level cache: the best time, and the key and value bytes it reads.
    /// </summary>
    static (double Seconds, long Bytes) DecodeAttention(int context, int streams)
    {
        const int heads = 16, kvHeads = 4, dh = 64, blockSize = 16, layers = 8;
        int blocksPerSequence = (context + 1 + blockSize - 1) / blockSize;
        // 8 layers of keys and values, 16 MiB each at least, whatever the step reads.
        int blocks = Math.Max(blocksPerSequence * streams, (16 << 20) / (blockSize * kvHeads * dh * sizeof(float)));
        using var pool = new KvCachePool(0, layers, blocks, blockSize, kvHeads, dh, CPU);
        for (int l = 0; l < layers; l++)
        {
            pool.Keys(l).normal_(0, 1);
            pool.Values(l).normal_(0, 1);
        }
        var random = new Random(7);
        var order = Enumerable.Range(0, blocks).OrderBy(_ => random.Next()).ToArray();
        // Disjoint sets of the step's blocks: repeat r reads layer r % layers through set (r / layers) % sets.
        int perSet = blocksPerSequence * streams, sets = blocks / perSet;
        // RoPE as the identity: the rotation costs the same at any angle, and what is measured is the walk over the pool.
        using var cos = ones([streams, dh]);
        using var sin = zeros([streams, dh]);
        using var norm = ones([dh]);
        double best = double.MaxValue;
        for (int r = 0; r < 3 * layers + 1; r++)
        {
            int set = r / layers % sets;
            var slices = Enumerable.Range(0, streams).Select(s => new SequenceSlice(context, 1,
                order.AsSpan(set * perSet + s * blocksPerSequence, blocksPerSequence).ToArray())).ToArray();
            using var meta = new AttentionMetadata(new ForwardContext(slices, blockSize, [.. Enumerable.Range(0, streams)]), CPU);
            var layer = new AttentionLayer(r % layers, heads, kvHeads, dh, 1 / Math.Sqrt(dh), null, norm, norm, 1e-6);
            using var q = randn([streams, heads * dh]);
            using var k = randn([streams, kvHeads * dh]);
            using var v = randn([streams, kvHeads * dh]);
            var clock = Stopwatch.StartNew();
            using var y = CpuKernels.Shared.Attention(q, k, v, layer, cos, sin, meta, pool);
            if (r > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return (best, 2L * streams * (context + 1) * kvHeads * dh * sizeof(float));
    }

    static unsafe (double Seconds, long Bytes) Product(WeightFormat format, int rows, int cols, int tokens, int repeats)
    {
        using var values = randn([rows, cols]) * 0.05f;
        using var stored = format == WeightFormat.Q8_0 ? MatrixWeight.Quantize(values) : Resident(values, format == WeightFormat.BF16 ? ScalarType.BFloat16 : ScalarType.Float32);
        var weight = new MatrixWeight(stored, rows, cols);
        using var x = randn([tokens, cols]);
        var kernels = CpuKernels.Shared;
        double best = double.MaxValue;
        for (int r = 0; r < repeats + 1; r++)
        {
            var clock = Stopwatch.StartNew();
            using var y = kernels.Linear(x, weight)[0];
            if (r > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return (best, weight.Bytes);
    }

    /// <summary>
    /// One MoE layer's experts on <paramref name="tokens"/> tokens, each routed to 4 of 32 (a fresh random choice each
    /// repeat, so one token's experts are mostly read from memory): the best time, and the expert weight bytes one token reads.
    /// </summary>
    static (double Seconds, long Bytes) Experts(WeightFormat format, int tokens, int repeats)
    {
        const int count = 32, topK = 4, inner = 512, hidden = 1024;
        MatrixWeight Matrix(int rows, int cols)
        {
            using var values = randn([rows, cols]) * 0.05f;
            var stored = format == WeightFormat.Q8_0 ? MatrixWeight.Quantize(values) : Resident(values, format == WeightFormat.BF16 ? ScalarType.BFloat16 : ScalarType.Float32);
            return new MatrixWeight(stored, rows, cols);
        }
        var group = new ExpertWeights(0, count, [.. Enumerable.Range(0, count).Select(_ => Matrix(inner, hidden))],
            [.. Enumerable.Range(0, count).Select(_ => Matrix(inner, hidden))], [.. Enumerable.Range(0, count).Select(_ => Matrix(hidden, inner))]);
        using var x = randn([tokens, hidden]);
        using var weights = full([tokens, topK], 0.25f);
        double best = double.MaxValue;
        for (int r = 0; r < repeats + 1; r++)
        {
            using var ids = rand([tokens, count]).argsort(1).narrow(1, 0, topK);
            var clock = Stopwatch.StartNew();
            using var y = CpuKernels.Shared.Experts(x, ids, weights, group);
            if (r > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        foreach (var m in group.Gate.Concat(group.Up).Concat(group.Down))
        {
            m.Tensor.Dispose();
        }
        return (best, topK * (group.Gate[0].Bytes + group.Up[0].Bytes + group.Down[0].Bytes));
    }

    /// <summary>A copy of <paramref name="values"/> in memory laid out as the loader lays out weights.</summary>
    static Tensor Resident(Tensor values, ScalarType dtype)
    {
        var resident = empty(values.shape, dtype);
        HugePages.Advise(resident);
        return resident.copy_(values);
    }

    static double TorchPrefill(ScalarType dtype, int rows, int cols, int tokens, int repeats)
    {
        using var w = randn([rows, cols]).to(dtype);
        using var x = randn([tokens, cols]).to(dtype);
        double best = double.MaxValue;
        for (int r = 0; r < repeats + 1; r++)
        {
            var clock = Stopwatch.StartNew();
            using var y = nn.functional.linear(x, w);
            if (r > 0) best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return 2.0 * tokens * rows * cols / best / 1e9;
    }

    static void Print(Report r)
    {
        Console.WriteLine($"threads {r.Threads}, path {r.Path}, read bandwidth {r.ReadGBps} GB/s, float32 multiply-add peak {r.PeakGflops} GFLOP/s; " +
            $"libtorch GEMM f32 {r.TorchPrefillGflops}, bf16 {r.TorchBf16PrefillGflops} GFLOP/s");
        foreach (var a in r.Attention ?? [])
            Console.WriteLine($"  decode attention, {a.Streams,2} stream(s) at {a.Context,5} tokens: {a.Microseconds,7} us a layer, {a.GBps,6} GB/s ({a.FractionOfBandwidth:P0})");
        foreach (var f in r.Formats)
        {
            Console.WriteLine($"  {f.Format,-5} decode {f.DecodeGBps,6} GB/s ({f.DecodeFractionOfBandwidth:P0}), from cache {f.DecodeCachedGBps,6} GB/s   prefill {f.PrefillGflops,6} GFLOP/s" +
                $"   experts: decode {f.MoeDecodeGBps,6} GB/s, prefill {f.MoePrefillGflops,6} GFLOP/s");
        }
    }
}
