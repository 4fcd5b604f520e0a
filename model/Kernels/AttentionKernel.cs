using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Attention straight over the paged KV pool, decode and prefill alike: no gather of a sequence's keys into a dense
/// tensor, no mask built on the host, no [queries, context] score matrix. One job per (token, KV head) on the team;
/// it reads the sequence's keys block by block through its block table, in tiles of 32 with an online softmax
/// (FlashAttention's running max and sum), for the query heads that share that KV head.
/// </summary>
[SkipLocalsInit]
public static unsafe class AttentionKernel
{
    const int Tile = 32;

    /// <summary>The step's geometry on the host: each packed token's slice, position and first visible key.</summary>
    public sealed class Step
    {
        public Step(ForwardContext context, int? slidingWindow)
        {
            Context = context;
            int tokens = context.TokenCount;
            Slice = new int[tokens];
            Position = new int[tokens];
            First = new int[tokens];
            int row = 0;
            for (int s = 0; s < context.Slices.Count; s++)
            {
                var slice = context.Slices[s];
                for (int i = 0; i < slice.QueryLength; i++, row++)
                {
                    Slice[row] = s;
                    Position[row] = slice.StartPosition + i;
                    First[row] = slidingWindow is int w ? Math.Max(0, Position[row] - w + 1) : 0;
                }
            }
        }

        public ForwardContext Context { get; }
        public int[] Slice { get; }
        public int[] Position { get; }
        public int[] First { get; }
    }

    /// <summary>
    /// q [T, H, Dh] and k [T, Hkv, Dh] get their per-head RMSNorm and RoPE in place; k and v [T, Hkv, Dh] are stored at
    /// <paramref name="slots"/> of the pool's layer [slots, Hkv, Dh]; output [T, H, Dh] is each token's attention.
    /// </summary>
    public static void Run(ThreadTeam team, KernelPath path, AttentionLayer layer, float* q, float* k, float* v, float* qNorm, float* kNorm,
        float* cos, float* sin, float* poolKeys, float* poolValues, Step step, long[] slots, float* output)
    {
        int t = step.Slice.Length;
        // Every key of the step is in the pool before any token attends (a prompt's tokens attend each other's).
        var prepare = new PrepareJob(path, layer, q, k, v, qNorm, kNorm, cos, sin, poolKeys, poolValues, slots);
        if (t >= 8) team.Run(t, prepare);
        else for (int i = 0; i < t; i++) prepare.Execute(i);
        team.Run(t * layer.KvHeads, new HeadsJob(path, layer, q, poolKeys, poolValues, step, output));
    }

    /// <summary>One token's per-head RMSNorm and RoPE of q and k in place, and its k and v stored at its slot.</summary>
    sealed class PrepareJob(KernelPath path, AttentionLayer layer, float* q, float* k, float* v, float* qNorm, float* kNorm,
        float* cos, float* sin, float* poolKeys, float* poolValues, long[] slots) : TeamJob
    {
        public override void Execute(int i)
        {
            int heads = layer.Heads, kv = layer.KvHeads, dh = layer.HeadDim;
            float eps = (float)layer.Eps;
            float* c = cos + (long)i * dh, s = sin + (long)i * dh;
            for (int h = 0; h < heads; h++) NormRope(path, q + ((long)i * heads + h) * dh, qNorm, c, s, dh, eps);
            for (int h = 0; h < kv; h++) NormRope(path, k + ((long)i * kv + h) * dh, kNorm, c, s, dh, eps);
            long row = (long)kv * dh;
            Buffer.MemoryCopy(k + i * row, poolKeys + slots[i] * row, row * 4, row * 4);
            Buffer.MemoryCopy(v + i * row, poolValues + slots[i] * row, row * 4, row * 4);
        }
    }

    /// <summary>Qwen3RMSNorm over one head (float32), then RoPE in transformers' rotate_half convention.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void NormRope(KernelPath path, float* x, float* weight, float* cos, float* sin, int dh, float eps)
    {
        int half = dh / 2;
        if (path >= KernelPath.Avx512 && half % 16 == 0)
        {
            var acc = Vector512<float>.Zero;
            for (int i = 0; i < dh; i += 16)
            {
                var xv = Vector512.Load(x + i);
                acc = Vector512.FusedMultiplyAdd(xv, xv, acc);
            }
            var scale = Vector512.Create(1f / MathF.Sqrt(Vector512.Sum(acc) / dh + eps));
            for (int i = 0; i < half; i += 16)
            {
                var a = Vector512.Load(weight + i) * (Vector512.Load(x + i) * scale);
                var b = Vector512.Load(weight + i + half) * (Vector512.Load(x + i + half) * scale);
                (a * Vector512.Load(cos + i) - b * Vector512.Load(sin + i)).Store(x + i);
                (b * Vector512.Load(cos + i + half) + a * Vector512.Load(sin + i + half)).Store(x + i + half);
            }
            return;
        }
        float squares = 0;
        for (int i = 0; i < dh; i++) squares += x[i] * x[i];
        float inv = 1f / MathF.Sqrt(squares / dh + eps);
        float* normed = stackalloc float[dh];
        for (int i = 0; i < dh; i++) normed[i] = weight[i] * (x[i] * inv);
        for (int i = 0; i < half; i++)
        {
            x[i] = normed[i] * cos[i] - normed[i + half] * sin[i];
            x[i + half] = normed[i + half] * cos[i + half] + normed[i] * sin[i + half];
        }
    }

    sealed class HeadsJob(KernelPath path, AttentionLayer layer, float* q, float* poolKeys, float* poolValues, Step step, float* output) : TeamJob
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int chunk)
        {
            int kv = layer.KvHeads, heads = layer.Heads, dh = layer.HeadDim, rep = heads / kv;
            int token = chunk / kv, group = chunk % kv;
            var slice = step.Context.Slices[step.Slice[token]];
            int blockSize = step.Context.BlockSize;
            int position = step.Position[token], first = step.First[token];
            float scale = (float)layer.Scaling;
            long keyStride = (long)kv * dh;

            float* max = stackalloc float[rep];
            float* sum = stackalloc float[rep];
            float* acc = stackalloc float[rep * dh];
            float* scores = stackalloc float[rep * Tile];
            for (int r = 0; r < rep; r++)
            {
                max[r] = float.NegativeInfinity;
                sum[r] = 0;
            }
            new Span<float>(acc, rep * dh).Clear();
            float* query = q + ((long)token * heads + group * rep) * dh;
            bool fourAtOnce = path >= KernelPath.Avx512 && dh % 16 == 0;

            // Key pointers of this tile and the next: the next tile's keys and values are asked for before this
            // tile's are used, so their DRAM latency passes under this tile's arithmetic.
            float** keys = stackalloc float*[2 * Tile];
            float** ahead = keys + Tile;
            int aheadCount = Locate(slice, blockSize, first, position, keyStride, group * dh, poolKeys, poolValues, dh, ahead);
            for (int tileStart = first; tileStart <= position; tileStart += Tile)
            {
                int n = aheadCount;
                float** swap = keys;
                keys = ahead;
                ahead = swap;
                aheadCount = tileStart + Tile <= position
                    ? Locate(slice, blockSize, tileStart + Tile, position, keyStride, group * dh, poolKeys, poolValues, dh, ahead) : 0;
                for (int j = 0; j < n; j++)
                {
                    int r = 0;
                    if (fourAtOnce)
                    {
                        for (; r + 4 <= rep; r += 4)
                        {
                            var four = Dots4(query + r * dh, dh, keys[j], dh) * scale;
                            scores[r * Tile + j] = four.GetElement(0);
                            scores[(r + 1) * Tile + j] = four.GetElement(1);
                            scores[(r + 2) * Tile + j] = four.GetElement(2);
                            scores[(r + 3) * Tile + j] = four.GetElement(3);
                        }
                    }
                    for (; r < rep; r++) scores[r * Tile + j] = Dot(path, query + r * dh, keys[j], dh) * scale;
                }
                for (int r = 0; r < rep; r++)
                {
                    float* s = scores + r * Tile;
                    float next = fourAtOnce ? SoftmaxTile(s, n, max[r], ref sum[r], out float correction)
                        : SoftmaxTileScalar(s, n, max[r], ref sum[r], out correction);
                    Scale(path, acc + r * dh, correction, dh);
                    // Each value sits where its key does, in the values tensor.
                    int jv = 0;
                    if (fourAtOnce)
                    {
                        for (; jv + 4 <= n; jv += 4)
                        {
                            AddScaled4(acc + r * dh, dh, poolValues + (keys[jv] - poolKeys), poolValues + (keys[jv + 1] - poolKeys),
                                poolValues + (keys[jv + 2] - poolKeys), poolValues + (keys[jv + 3] - poolKeys), s + jv);
                        }
                    }
                    for (; jv < n; jv++)
                    {
                        AddScaled(path, acc + r * dh, poolValues + (keys[jv] - poolKeys), s[jv], dh);
                    }
                    max[r] = next;
                }
            }
            for (int r = 0; r < rep; r++)
            {
                float* target = output + ((long)token * heads + group * rep + r) * dh;
                float inv = 1f / sum[r];
                for (int i = 0; i < dh; i++) target[i] = acc[r * dh + i] * inv;
            }
        }
    }

    /// <summary>
    /// The keys of one tile, [tileStart, min(tileStart + Tile, position + 1)), as pointers into the pool's keys (this KV
    /// head's part of each slot), found through the sequence's block table (one division a tile, not two a key: the
    /// block size is not a constant); each key and its value is prefetched, since no prefetcher sees the walk coming.
    /// Returns how many keys the tile has.
    /// </summary>
    static int Locate(SequenceSlice slice, int blockSize, int tileStart, int position, long keyStride, int headOffset,
        float* poolKeys, float* poolValues, int dh, float** keys)
    {
        int n = Math.Min(Tile, position - tileStart + 1);
        int block = tileStart / blockSize, offset = tileStart - block * blockSize;
        for (int j = 0; j < n; j++, offset++)
        {
            if (offset == blockSize)
            {
                block++;
                offset = 0;
            }
            long slot = (long)slice.BlockTable[block] * blockSize + offset;
            keys[j] = poolKeys + slot * keyStride + headOffset;
            if (Sse.IsSupported)
            {
                byte* key = (byte*)keys[j], value = (byte*)(poolValues + (keys[j] - poolKeys));
                for (int b = 0; b < dh * sizeof(float); b += 64)
                {
                    Sse.Prefetch0(key + b);
                    Sse.Prefetch0(value + b);
                }
            }
        }
        return n;
    }

    /// <summary>
    /// One tile's step of the online softmax for one head: the new running max, the factor the sums so far are scaled
    /// by, the tile's scores s[0..n) replaced by exp(s - max), and the running sum updated.
    /// </summary>
    static float SoftmaxTileScalar(float* s, int n, float max, ref float sum, out float correction)
    {
        float tileMax = s[0];
        for (int j = 1; j < n; j++) tileMax = MathF.Max(tileMax, s[j]);
        float next = MathF.Max(max, tileMax);
        correction = MathF.Exp(max - next);
        sum *= correction;
        for (int j = 0; j < n; j++)
        {
            s[j] = MathF.Exp(s[j] - next);
            sum += s[j];
        }
        return next;
    }

    /// <summary><see cref="SoftmaxTileScalar"/> on the tile's 32 scores as two vectors, lanes past n left out.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float SoftmaxTile(float* s, int n, float max, ref float sum, out float correction)
    {
        var lanes = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var in0 = Vector512.LessThan(lanes, Vector512.Create(n)).AsSingle();
        var in1 = Vector512.LessThan(lanes, Vector512.Create(n - 16)).AsSingle();
        var none = Vector512.Create(float.NegativeInfinity);
        var s0 = Vector512.ConditionalSelect(in0, Vector512.Load(s), none);
        var s1 = Vector512.ConditionalSelect(in1, Vector512.Load(s + 16), none);
        float next = MathF.Max(max, RowOps.HorizontalMax(Vector512.Max(s0, s1)));
        correction = MathF.Exp(max - next);
        var top = Vector512.Create(next);
        var e0 = VectorMath.Exp(s0 - top) & in0;
        var e1 = VectorMath.Exp(s1 - top) & in1;
        e0.Store(s);
        e1.Store(s + 16);
        sum = sum * correction + Vector512.Sum(e0 + e1);
        return next;
    }

    /// <summary>Four queries (rows dh apart) against one key: the key is loaded once, the four sums reduced together.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static Vector128<float> Dots4(float* queries, int stride, float* key, int dh)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int i = 0; i < dh; i += 16)
        {
            var kv = Vector512.Load(key + i);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(queries + i), kv, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Load(queries + stride + i), kv, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Load(queries + 2 * stride + i), kv, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Load(queries + 3 * stride + i), kv, a3);
        }
        return ProductKernels.Sum4(a0, a1, a2, a3);
    }

    /// <summary>acc += w[0] v0 + w[1] v1 + w[2] v2 + w[3] v3: one load and store of the accumulator for four values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AddScaled4(float* acc, int dh, float* v0, float* v1, float* v2, float* v3, float* w)
    {
        var w0 = Vector512.Create(w[0]);
        var w1 = Vector512.Create(w[1]);
        var w2 = Vector512.Create(w[2]);
        var w3 = Vector512.Create(w[3]);
        for (int i = 0; i < dh; i += 16)
        {
            var a = Vector512.FusedMultiplyAdd(Vector512.Load(v0 + i), w0, Vector512.Load(acc + i));
            a = Vector512.FusedMultiplyAdd(Vector512.Load(v1 + i), w1, a);
            a = Vector512.FusedMultiplyAdd(Vector512.Load(v2 + i), w2, a);
            Vector512.FusedMultiplyAdd(Vector512.Load(v3 + i), w3, a).Store(acc + i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot(KernelPath path, float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (path >= KernelPath.Avx512)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
            sum = Vector512.Sum(acc);
        }
        else if (path == KernelPath.Vector256)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scale(KernelPath path, float* x, float factor, int n)
    {
        int i = 0;
        if (path >= KernelPath.Avx512)
        {
            var f = Vector512.Create(factor);
            for (; i + 16 <= n; i += 16) (Vector512.Load(x + i) * f).Store(x + i);
        }
        else if (path == KernelPath.Vector256)
        {
            var f = Vector256.Create(factor);
            for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) * f).Store(x + i);
        }
        for (; i < n; i++) x[i] *= factor;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AddScaled(KernelPath path, float* acc, float* x, float weight, int n)
    {
        int i = 0;
        if (path >= KernelPath.Avx512)
        {
            var w = Vector512.Create(weight);
            for (; i + 16 <= n; i += 16) Vector512.FusedMultiplyAdd(Vector512.Load(x + i), w, Vector512.Load(acc + i)).Store(acc + i);
        }
        else if (path == KernelPath.Vector256)
        {
            var w = Vector256.Create(weight);
            for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + i), w, Vector256.Load(acc + i)).Store(acc + i);
        }
        for (; i < n; i++) acc[i] += weight * x[i];
    }
}
