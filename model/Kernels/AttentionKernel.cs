using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Attention straight over the paged KV pool, decode and prefill alike: no gather of a sequence's keys into a dense
/// tensor, no mask built on the host, no [queries, context] score matrix. On the vector paths (AVX-512, and 256-bit
/// for heads a multiple of 8 wide) a prompt's tokens run a chunk per (block of its consecutive tokens, KV head) and a
/// decode token a chunk per part of its keys, every KV head in it; elsewhere a chunk per (token, KV head). A chunk
/// reads the sequence's keys block by block through its block table, in tiles of 32 with an online softmax
/// (FlashAttention's running max and sum), for the query heads that share each KV head.
/// </summary>
[SkipLocalsInit]
public static unsafe partial class AttentionKernel
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
    /// Decode tokens' split parts keep their states in the calling thread's <see cref="KernelScratch"/>, which this
    /// starts afresh: a caller must hold none of its slices across the call.
    /// </summary>
    public static void Run(ThreadTeam team, KernelPath path, AttentionLayer layer, float* q, float* k, float* v, float* qNorm, float* kNorm,
        float* cos, float* sin, float* poolKeys, float* poolValues, Step step, long[] slots, float* output)
    {
        int t = step.Slice.Length;
        // Every key of the step is in the pool before any token attends (a prompt's tokens attend each other's).
        var prepare = new PrepareJob(path, layer, q, k, v, qNorm, kNorm, cos, sin, poolKeys, poolValues, slots);
        if (t >= 8) team.Run(t, prepare);
        else for (int i = 0; i < t; i++) prepare.Execute(i);
        if (BlockJob.Takes(path, layer.HeadDim))
        {
            // Prompts' tokens in blocks (compute-bound: each key serves many rows), decode tokens by parts of their keys.
            var blocks = new BlockJob(path, layer, q, poolKeys, poolValues, step, output);
            if (blocks.Chunks > 0) team.Run(blocks.Chunks, blocks);
            var decode = new DecodeJob(path, layer, q, poolKeys, poolValues, step, output);
            if (decode.Chunks > 0)
            {
                team.Run(decode.Chunks, decode);
                decode.Merge();
            }
        }
        else
        {
            team.Run(t * layer.KvHeads, new HeadsJob(path, layer, q, poolKeys, poolValues, step, output));
        }
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
        if (path == KernelPath.Vector256 && half % 8 == 0)
        {
            var acc = Vector256<float>.Zero;
            for (int i = 0; i < dh; i += 8)
            {
                var xv = Vector256.Load(x + i);
                acc = Vector256.FusedMultiplyAdd(xv, xv, acc);
            }
            var scale = Vector256.Create(1f / MathF.Sqrt(Vector256.Sum(acc) / dh + eps));
            for (int i = 0; i < half; i += 8)
            {
                var a = Vector256.Load(weight + i) * (Vector256.Load(x + i) * scale);
                var b = Vector256.Load(weight + i + half) * (Vector256.Load(x + i + half) * scale);
                (a * Vector256.Load(cos + i) - b * Vector256.Load(sin + i)).Store(x + i);
                (b * Vector256.Load(cos + i + half) + a * Vector256.Load(sin + i + half)).Store(x + i + half);
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

    /// <summary>
    /// A chunk per (token, KV head), for what <see cref="BlockJob"/> does not take (the scalar path, heads not a whole
    /// number of the path's vectors): one query head at a time against each key.
    /// </summary>
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
            long values = poolValues - poolKeys;

            float** buffer = stackalloc float*[2 * Tile];
            var tiles = new KeyTiles(slice, blockSize, first, position, keyStride, group * dh, poolKeys, poolValues, dh, buffer, everyTile: true);
            for (int tileStart = first; tileStart <= position; tileStart += Tile)
            {
                int n = tiles.Next(tileStart, out float** keys);
                for (int j = 0; j < n; j++)
                {
                    for (int r = 0; r < rep; r++) scores[r * Tile + j] = Dot(path, query + r * dh, keys[j], dh) * scale;
                }
                for (int r = 0; r < rep; r++)
                {
                    float* s = scores + r * Tile;
                    max[r] = SoftmaxTileScalar(s, n, max[r], ref sum[r], out float correction);
                    AccumulateRow(path, acc + r * dh, correction, s, keys, values, n, dh);
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

    /// <summary>What the vector paths' jobs read and write: the step's queries, the pool's layer and the output.</summary>
    abstract class PoolJob(KernelPath path, AttentionLayer layer, float* q, float* poolKeys, float* poolValues, Step step, float* output) : TeamJob
    {
        private protected readonly KernelPath _path = path;
        private protected readonly AttentionLayer _layer = layer;
        private protected readonly float* _q = q, _poolKeys = poolKeys, _poolValues = poolValues, _output = output;
        private protected readonly Step _step = step;
    }

    /// <summary>
    /// Rows of query heads a <see cref="BlockJob"/> chunk computes at once: enough consecutive tokens of one sequence
    /// that each key and value read serves about 16 rows (a token's query heads of one KV head, times the tokens).
    /// </summary>
    const int BlockRows = 16;

    /// <summary>
    /// The vector path's attention for prompts (slices of more than one token), a chunk per (block of consecutive tokens
    /// of one slice, KV head): every key and value of a tile is read once for all the block's query heads of that KV
    /// head, where one token at a time reads the whole context again for each token of a prompt: a bench-moe prefill of
    /// 2048 tokens spent 0.46 ms a token in attention that way and 0.24-0.27 ms this way (0.94 against 0.72-0.76 ms a
    /// token in all, on the 2-core VM). Each tile is one <see cref="AttendTile"/> for the block's rows.
    /// </summary>
    sealed class BlockJob : PoolJob
    {
        readonly int[] _firstToken, _tokenCount;

        /// <summary>Whether this job runs on <paramref name="path"/> for heads of <paramref name="dh"/>: whole vectors of a head, 16 or 8 wide.</summary>
        public static bool Takes(KernelPath path, int dh) => path >= KernelPath.Avx512 ? dh % 16 == 0 : path == KernelPath.Vector256 && dh % 8 == 0;

        public BlockJob(KernelPath path, AttentionLayer layer, float* q, float* poolKeys, float* poolValues, Step step, float* output)
            : base(path, layer, q, poolKeys, poolValues, step, output)
        {
            int rep = layer.Heads / layer.KvHeads, perBlock = Math.Max(1, BlockRows / rep);
            var first = new List<int>();
            var count = new List<int>();
            int row = 0;
            foreach (var slice in step.Context.Slices)
            {
                // A slice of one token is a decode token's: DecodeJob takes it.
                for (int i = 0; slice.QueryLength > 1 && i < slice.QueryLength; i += perBlock)
                {
                    first.Add(row + i);
                    count.Add(Math.Min(perBlock, slice.QueryLength - i));
                }
                row += slice.QueryLength;
            }
            _firstToken = [.. first];
            _tokenCount = [.. count];
        }

        public int Chunks => _firstToken.Length * _layer.KvHeads;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int chunk)
        {
            int kv = _layer.KvHeads, heads = _layer.Heads, dh = _layer.HeadDim, rep = heads / kv;
            int block = chunk / kv, group = chunk % kv;
            int t0 = _firstToken[block], tokens = _tokenCount[block], rows = tokens * rep;
            var slice = _step.Context.Slices[_step.Slice[t0]];
            int blockSize = _step.Context.BlockSize;
            float scale = (float)_layer.Scaling;
            long keyStride = (long)kv * dh;

            float** query = stackalloc float*[rows];
            float** target = stackalloc float*[rows];
            int* last = stackalloc int[rows];
            int* first = stackalloc int[rows];
            float* max = stackalloc float[rows];
            float* sum = stackalloc float[rows];
            float* correction = stackalloc float[rows];
            float* acc = stackalloc float[rows * dh];
            float* scores = stackalloc float[rows * Tile];
            int from = int.MaxValue, to = 0;
            for (int i = 0; i < rows; i++)
            {
                int token = t0 + i / rep;
                long head = (long)token * heads + group * rep + i % rep;
                query[i] = _q + head * dh;
                target[i] = _output + head * dh;
                last[i] = _step.Position[token];
                first[i] = _step.First[token];
                from = Math.Min(from, first[i]);
                to = Math.Max(to, last[i]);
                max[i] = float.NegativeInfinity;
                sum[i] = 0;
            }
            new Span<float>(acc, rows * dh).Clear();
            long values = _poolValues - _poolKeys;

            float** buffer = stackalloc float*[2 * Tile];
            var tiles = new KeyTiles(slice, blockSize, from, to, keyStride, group * dh, _poolKeys, _poolValues, dh, buffer, everyTile: false);
            for (int tileStart = from; tileStart <= to; tileStart += Tile)
            {
                int n = tiles.Next(tileStart, out float** keys);
                AttendTile(_path, query, rows, first, last, max, sum, correction, acc, scores, scale, dh, keys, values, n, tileStart,
                    tiles.Ahead, tiles.AheadCount, 0);
            }
            for (int r = 0; r < rows; r++)
            {
                float inv = 1f / sum[r];
                for (int i = 0; i < dh; i++) target[r][i] = acc[r * dh + i] * inv;
            }
        }
    }

    /// <summary>
    /// The vector path's attention for decode tokens (slices of one token), a chunk per (token, part of its keys): a
    /// chunk walks whole slots of the pool, every KV head's key and value of each tile (each KV head's rows one
    /// <see cref="AttendTile"/> after another), so the walk reads [slot, Hkv, Dh] front to back. A chunk per KV head, as
    /// <see cref="BlockJob"/> takes prompts, reads a quarter of each slot on bench-moe's four KV heads and left the
    /// keys at 20% of the bandwidth on the 2-core VM (the prefetchers fetch the rest of the slot for nothing). One
    /// token's keys are split into parts (flash-decoding's split of the keys), two or more from 64 keys on, so that one
    /// stream's decode uses more than one thread; each part's softmax state is merged afterwards (<see cref="Merge"/>).
    /// How many parts depends on the number of keys only, so a token's result is the same whatever else its step holds.
    /// A prompt's token that ends up alone in its slice (a chunk of one token) is taken here too: its sums then round
    /// differently from the block job's, well within float32 agreement.
    /// </summary>
    sealed class DecodeJob : PoolJob
    {
        /// <summary>Keys a part takes at most: eight tiles, enough arithmetic that the part's first tile, whose keys are asked for only as it starts, costs little.</summary>
        const int PartKeys = 256;

        readonly float* _partials;
        readonly int[] _tokens, _firstChunk, _parts, _chunkToken;

        public DecodeJob(KernelPath path, AttentionLayer layer, float* q, float* poolKeys, float* poolValues, Step step, float* output)
            : base(path, layer, q, poolKeys, poolValues, step, output)
        {
            var tokens = new List<int>();
            int row = 0;
            foreach (var slice in step.Context.Slices)
            {
                if (slice.QueryLength == 1) tokens.Add(row);
                row += slice.QueryLength;
            }
            _tokens = [.. tokens];
            _firstChunk = new int[_tokens.Length];
            _parts = new int[_tokens.Length];
            int chunks = 0;
            for (int i = 0; i < _tokens.Length; i++)
            {
                _firstChunk[i] = chunks;
                _parts[i] = Parts(step.Position[_tokens[i]] - step.First[_tokens[i]] + 1);
                chunks += _parts[i];
            }
            Chunks = chunks;
            _chunkToken = new int[chunks];
            for (int i = 0; i < _tokens.Length; i++) _chunkToken.AsSpan(_firstChunk[i], _parts[i]).Fill(i);
            // A part's unnormalised state: per query head its max, its sum and its accumulator.
            _partials = chunks > _tokens.Length ? KernelScratch.ForProduct().Take<float>((long)chunks * PartialSize) : null;
        }

        public int Chunks { get; }

        int PartialSize => _layer.Heads * (_layer.HeadDim + 2);

        /// <summary>Parts of a token that sees <paramref name="keys"/> keys: one under 64, else at least two, at most <see cref="PartKeys"/> keys each.</summary>
        static int Parts(int keys) => keys < 64 ? 1 : Math.Max(2, (keys + PartKeys - 1) / PartKeys);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Execute(int chunk)
        {
            int kv = _layer.KvHeads, heads = _layer.Heads, dh = _layer.HeadDim, rep = heads / kv;
            int index = _chunkToken[chunk], part = chunk - _firstChunk[index], parts = _parts[index], token = _tokens[index];
            var slice = _step.Context.Slices[_step.Slice[token]];
            int position = _step.Position[token], firstKey = _step.First[token];
            int size = (position - firstKey + 1 + parts - 1) / parts;
            int from = firstKey + part * size, to = Math.Min(position, from + size - 1);
            float scale = (float)_layer.Scaling;
            long keyStride = (long)kv * dh, values = _poolValues - _poolKeys;

            float** query = stackalloc float*[heads];
            int* first = stackalloc int[rep];
            int* last = stackalloc int[rep];
            float* max = stackalloc float[heads];
            float* sum = stackalloc float[heads];
            float* correction = stackalloc float[rep];
            float* acc = stackalloc float[heads * dh];
            float* scores = stackalloc float[rep * Tile];
            float** headKeys = stackalloc float*[Tile];
            for (int h = 0; h < heads; h++)
            {
                query[h] = _q + ((long)token * heads + h) * dh;
                max[h] = float.NegativeInfinity;
                sum[h] = 0;
            }
            for (int r = 0; r < rep; r++)
            {
                first[r] = firstKey;
                last[r] = position;
            }
            new Span<float>(acc, heads * dh).Clear();

            float** buffer = stackalloc float*[2 * Tile];
            var tiles = new KeyTiles(slice, _step.Context.BlockSize, from, to, keyStride, 0, _poolKeys, _poolValues, (int)keyStride, buffer, everyTile: false);
            for (int tileStart = from; tileStart <= to; tileStart += Tile)
            {
                int n = tiles.Next(tileStart, out float** keys);
                for (int g = 0; g < kv; g++)
                {
                    for (int j = 0; j < n; j++) headKeys[j] = keys[j] + g * dh;
                    int h = g * rep;
                    AttendTile(_path, query + h, rep, first, last, max + h, sum + h, correction, acc + h * dh, scores, scale, dh, headKeys, values,
                        n, tileStart, tiles.Ahead, tiles.AheadCount, g * dh);
                }
            }
            if (parts == 1)
            {
                for (int h = 0; h < heads; h++)
                {
                    float* target = _output + ((long)token * heads + h) * dh;
                    float inv = 1f / sum[h];
                    for (int i = 0; i < dh; i++) target[i] = acc[h * dh + i] * inv;
                }
                return;
            }
            float* partial = _partials + (long)chunk * PartialSize;
            Buffer.MemoryCopy(max, partial, heads * sizeof(float), heads * sizeof(float));
            Buffer.MemoryCopy(sum, partial + heads, heads * sizeof(float), heads * sizeof(float));
            Buffer.MemoryCopy(acc, partial + 2 * heads, (long)heads * dh * sizeof(float), (long)heads * dh * sizeof(float));
        }

        /// <summary>Each split token's output from its parts' states, in part order: Σ e^(max_p - max) acc_p / Σ e^(max_p - max) sum_p.</summary>
        public void Merge()
        {
            int heads = _layer.Heads, dh = _layer.HeadDim;
            for (int i = 0; i < _tokens.Length; i++)
            {
                int parts = _parts[i];
                if (parts == 1) continue;
                float* first = _partials + (long)_firstChunk[i] * PartialSize;
                for (int h = 0; h < heads; h++)
                {
                    float top = float.NegativeInfinity;
                    for (int p = 0; p < parts; p++) top = MathF.Max(top, first[p * PartialSize + h]);
                    float* target = _output + ((long)_tokens[i] * heads + h) * dh;
                    new Span<float>(target, dh).Clear();
                    float total = 0;
                    for (int p = 0; p < parts; p++)
                    {
                        float* partial = first + p * PartialSize;
                        float weight = MathF.Exp(partial[h] - top);
                        total += weight * partial[heads + h];
                        AddScaled(_path, target, partial + 2 * heads + h * dh, weight, dh);
                    }
                    Scale(_path, target, 1f / total, dh);
                }
            }
        }
    }

    /// <summary>
    /// One tile's step for <paramref name="rows"/> query rows of one KV head, whose state (running max, sum and
    /// accumulators) it advances: the rows' scores against the tile's n keys (four rows against each key, the key read
    /// once for them), each row's online-softmax step over the keys it sees (past its position or before its window
    /// left out), then four rows' accumulators held over the tile's values. While it scores key j it asks for key and
    /// value j of the next tile (<paramref name="next"/>, <paramref name="nextOffset"/> floats on), so the next tile's
    /// misses spread over this tile's arithmetic: asked for all at once, as the tile started, they queued behind each
    /// other (decode attention read its keys 25% faster from memory spread, on the 2-core VM).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AttendTile(KernelPath path, float** query, int rows, int* first, int* last, float* max, float* sum, float* correction, float* acc,
        float* scores, float scale, int dh, float** keys, long values, int n, int tileStart, float** next, int nextCount, int nextOffset)
    {
        bool wide = path >= KernelPath.Avx512;
        for (int j = 0; j < n; j++)
        {
            if (j < nextCount && Sse.IsSupported)
            {
                byte* nextKey = (byte*)(next[j] + nextOffset), nextValue = (byte*)(next[j] + nextOffset + values);
                for (int b = 0; b < dh * sizeof(float); b += 64)
                {
                    Sse.Prefetch0(nextKey + b);
                    Sse.Prefetch0(nextValue + b);
                }
            }
            float* key = keys[j];
            // Rows past the last four run as four with the last row repeated, so every row's score is
            // summed the same way whichever rows share its block (a decode token's and a prompt's alike).
            for (int r = 0; r < rows; r += 4)
            {
                float* q1 = query[Math.Min(r + 1, rows - 1)], q2 = query[Math.Min(r + 2, rows - 1)], q3 = query[Math.Min(r + 3, rows - 1)];
                var four = (wide ? Dots4(query[r], q1, q2, q3, key, dh) : Dots4Vector256(query[r], q1, q2, q3, key, dh)) * scale;
                scores[r * Tile + j] = four.GetElement(0);
                if (r + 1 < rows) scores[(r + 1) * Tile + j] = four.GetElement(1);
                if (r + 2 < rows) scores[(r + 2) * Tile + j] = four.GetElement(2);
                if (r + 3 < rows) scores[(r + 3) * Tile + j] = four.GetElement(3);
            }
        }
        // Each row's softmax step over the keys it sees; a row that sees none of this tile keeps its state.
        for (int r = 0; r < rows; r++)
        {
            float* s = scores + r * Tile;
            int lo = Math.Max(first[r], tileStart), hi = Math.Min(last[r], tileStart + n - 1);
            if (lo > hi)
            {
                new Span<float>(s, n).Clear();
                correction[r] = 1;
                continue;
            }
            for (int j = 0; j < lo - tileStart; j++) s[j] = float.NegativeInfinity;
            for (int j = hi - tileStart + 1; j < n; j++) s[j] = float.NegativeInfinity;
            max[r] = wide ? SoftmaxTile(s, n, max[r], ref sum[r], out correction[r])
                : SoftmaxTileVector256(s, n, max[r], ref sum[r], out correction[r]);
        }
        // Values: four rows' accumulators over the tile, each value read once for them.
        int q4 = 0;
        for (; q4 + 4 <= rows; q4 += 4)
        {
            if (wide) AccumulateValues(acc + q4 * dh, dh, scores + q4 * Tile, correction + q4, keys, values, n);
            else AccumulateValuesVector256(acc + q4 * dh, dh, scores + q4 * Tile, correction + q4, keys, values, n);
        }
        for (; q4 < rows; q4++) AccumulateRow(path, acc + q4 * dh, correction[q4], scores + q4 * Tile, keys, values, n, dh);
    }

    /// <summary>Four query rows against one key: the key is loaded once, the four sums reduced together.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> Dots4(float* q0, float* q1, float* q2, float* q3, float* key, int dh)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int i = 0; i < dh; i += 16)
        {
            var kv = Vector512.Load(key + i);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Load(q0 + i), kv, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Load(q1 + i), kv, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Load(q2 + i), kv, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Load(q3 + i), kv, a3);
        }
        return ProductKernels.Sum4(a0, a1, a2, a3);
    }

    /// <summary>
    /// Four rows' accumulators (dh apart) scaled by their corrections, then += Σ_j p[r][j] v_j over the tile's n values
    /// (each at its key's pointer plus <paramref name="values"/>): 16 columns of the four rows held in registers while
    /// the values stream by, each value's columns read once for the four rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AccumulateValues(float* acc, int dh, float* p, float* correction, float** keys, long values, int n)
    {
        var c0 = Vector512.Create(correction[0]);
        var c1 = Vector512.Create(correction[1]);
        var c2 = Vector512.Create(correction[2]);
        var c3 = Vector512.Create(correction[3]);
        float* p0 = p, p1 = p + Tile, p2 = p + 2 * Tile, p3 = p + 3 * Tile;
        int d = 0;
        for (; d + 32 <= dh; d += 32)
        {
            var a0 = Vector512.Load(acc + d) * c0;
            var b0 = Vector512.Load(acc + d + 16) * c0;
            var a1 = Vector512.Load(acc + dh + d) * c1;
            var b1 = Vector512.Load(acc + dh + d + 16) * c1;
            var a2 = Vector512.Load(acc + 2 * dh + d) * c2;
            var b2 = Vector512.Load(acc + 2 * dh + d + 16) * c2;
            var a3 = Vector512.Load(acc + 3 * dh + d) * c3;
            var b3 = Vector512.Load(acc + 3 * dh + d + 16) * c3;
            for (int j = 0; j < n; j++)
            {
                float* v = keys[j] + values + d;
                var lo = Vector512.Load(v);
                var hi = Vector512.Load(v + 16);
                var w = Vector512.Create(p0[j]);
                a0 = Vector512.FusedMultiplyAdd(lo, w, a0);
                b0 = Vector512.FusedMultiplyAdd(hi, w, b0);
                w = Vector512.Create(p1[j]);
                a1 = Vector512.FusedMultiplyAdd(lo, w, a1);
                b1 = Vector512.FusedMultiplyAdd(hi, w, b1);
                w = Vector512.Create(p2[j]);
                a2 = Vector512.FusedMultiplyAdd(lo, w, a2);
                b2 = Vector512.FusedMultiplyAdd(hi, w, b2);
                w = Vector512.Create(p3[j]);
                a3 = Vector512.FusedMultiplyAdd(lo, w, a3);
                b3 = Vector512.FusedMultiplyAdd(hi, w, b3);
            }
            a0.Store(acc + d);
            b0.Store(acc + d + 16);
            a1.Store(acc + dh + d);
            b1.Store(acc + dh + d + 16);
            a2.Store(acc + 2 * dh + d);
            b2.Store(acc + 2 * dh + d + 16);
            a3.Store(acc + 3 * dh + d);
            b3.Store(acc + 3 * dh + d + 16);
        }
        for (; d < dh; d += 16)
        {
            var a0 = Vector512.Load(acc + d) * c0;
            var a1 = Vector512.Load(acc + dh + d) * c1;
            var a2 = Vector512.Load(acc + 2 * dh + d) * c2;
            var a3 = Vector512.Load(acc + 3 * dh + d) * c3;
            for (int j = 0; j < n; j++)
            {
                var x = Vector512.Load(keys[j] + values + d);
                a0 = Vector512.FusedMultiplyAdd(x, Vector512.Create(p0[j]), a0);
                a1 = Vector512.FusedMultiplyAdd(x, Vector512.Create(p1[j]), a1);
                a2 = Vector512.FusedMultiplyAdd(x, Vector512.Create(p2[j]), a2);
                a3 = Vector512.FusedMultiplyAdd(x, Vector512.Create(p3[j]), a3);
            }
            a0.Store(acc + d);
            a1.Store(acc + dh + d);
            a2.Store(acc + 2 * dh + d);
            a3.Store(acc + 3 * dh + d);
        }
    }

    /// <summary>
    /// A sequence's keys up to <c>to</c>, a tile at a time from where it starts, as pointers (<see cref="Locate"/>):
    /// each tile is located while the tile before it is used. The first tile's keys and values are asked for at once;
    /// later tiles' too when <c>everyTile</c>, else the caller asks for <see cref="Ahead"/> as it goes
    /// (<see cref="AttendTile"/>). <c>span</c> is how many floats of each slot are read from the key's pointer on.
    /// <c>buffer</c> holds 2 × <see cref="Tile"/> pointers.
    /// </summary>
    ref struct KeyTiles
    {
        readonly SequenceSlice _slice;
        readonly int _blockSize, _to, _headOffset, _span;
        readonly bool _everyTile;
        readonly long _keyStride;
        readonly float* _poolKeys, _poolValues;
        float** _current, _ahead;
        int _aheadCount;

        public KeyTiles(SequenceSlice slice, int blockSize, int from, int to, long keyStride, int headOffset, float* poolKeys,
            float* poolValues, int span, float** buffer, bool everyTile)
        {
            _everyTile = everyTile;
            _slice = slice;
            _blockSize = blockSize;
            _to = to;
            _keyStride = keyStride;
            _headOffset = headOffset;
            _poolKeys = poolKeys;
            _poolValues = poolValues;
            _span = span;
            _current = buffer;
            _ahead = buffer + Tile;
            _aheadCount = Locate(slice, blockSize, from, to, keyStride, headOffset, poolKeys, poolValues, span, _ahead, prefetch: true);
        }

        /// <summary>The tile after the one <see cref="Next"/> gave last (located, not yet asked for unless every tile is), and how many keys it has.</summary>
        public readonly float** Ahead => _ahead;

        public readonly int AheadCount => _aheadCount;

        /// <summary>The tile at <paramref name="tileStart"/> (tiles are taken in order, Tile apart): its keys and how many.</summary>
        public int Next(int tileStart, out float** keys)
        {
            int n = _aheadCount;
            float** located = _ahead;
            _ahead = _current;
            _current = located;
            _aheadCount = tileStart + Tile <= _to
                ? Locate(_slice, _blockSize, tileStart + Tile, _to, _keyStride, _headOffset, _poolKeys, _poolValues, _span, _ahead, _everyTile) : 0;
            keys = _current;
            return n;
        }
    }

    /// <summary>
    /// The keys of one tile, [tileStart, min(tileStart + Tile, position + 1)), as pointers into the pool's keys (one KV
    /// head's part of each slot, or the slot's start for a walk over every KV head), found through the sequence's block
    /// table (one division a tile, not two a key: the block size is not a constant); with <paramref name="prefetch"/> each key and its value is asked for, since no
    /// prefetcher sees the walk coming. Returns how many keys the tile has.
    /// </summary>
    static int Locate(SequenceSlice slice, int blockSize, int tileStart, int position, long keyStride, int headOffset,
        float* poolKeys, float* poolValues, int span, float** keys, bool prefetch)
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
            if (prefetch && Sse.IsSupported)
            {
                byte* key = (byte*)keys[j], value = (byte*)(poolValues + (keys[j] - poolKeys));
                for (int b = 0; b < span * sizeof(float); b += 64)
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

    /// <summary>
    /// One row's value step over a tile: its accumulator rescaled by the softmax's <paramref name="correction"/>, then each
    /// of the tile's n values added at its weight. Each value sits where its key does, <paramref name="values"/> further on.
    /// </summary>
    static void AccumulateRow(KernelPath path, float* acc, float correction, float* weights, float** keys, long values, int n, int dh)
    {
        Scale(path, acc, correction, dh);
        for (int j = 0; j < n; j++) AddScaled(path, acc, keys[j] + values, weights[j], dh);
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
