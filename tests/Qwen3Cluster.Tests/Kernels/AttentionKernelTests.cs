using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Kernels;
using Qwen3Cluster.Model.Layers;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Kernels;

/// <summary>The paged attention kernel against the padded torch attention, on a step of prefill and decode slices.</summary>
public sealed class AttentionKernelTests
{
    public static TheoryData<KernelPath, int, int, int, int> Cases()
    {
        var data = new TheoryData<KernelPath, int, int, int, int>();
        foreach (var path in KernelPaths.Available)
        {
            // 100: the decode token at 600 sees 100 keys, split in two parts that start off the tiles and blocks.
            foreach (int window in new[] { 0, 6, 37, 100 })
            {
                // Head sizes the vector paths take in blocks of tokens (64, 128: four and two query heads a KV head,
                // and eight) and one the AVX-512 path does not (24: the 256-bit path takes it, in vectors of 8).
                data.Add(path, window, 4, 2, 24);
                data.Add(path, window, 8, 2, 64);
                data.Add(path, window, 4, 2, 128);
                data.Add(path, window, 8, 1, 64);
            }
        }
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void PagedAttentionEqualsThePaddedTorchAttention(KernelPath path, int window, int heads, int kvHeads, int dh)
    {
        const int blocks = 192, blockSize = 4;
        using var generator = new Generator(17);
        // A prefill chunk from 0 over several tiles of keys, a decode token at 20 over cached keys, a later chunk of a
        // prompt, and decode tokens whose keys the vector paths split in two parts (70) and in three (600).
        var context = new ForwardContext(
        [
            new SequenceSlice(0, 45, [3, 9, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]),
            new SequenceSlice(20, 1, [0, 5, 6, 1, 12, 2]),
            new SequenceSlice(5, 3, [7, 15]),
            new SequenceSlice(70, 1, [26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 4, 8, 10, 11]),
            new SequenceSlice(600, 1, [.. Enumerable.Range(40, 151).Reverse()]),
        ], blockSize, [44, 45, 48, 49, 50]);
        int t = context.TokenCount;
        using var q = randn([t, heads * dh], generator: generator);
        using var k = randn([t, kvHeads * dh], generator: generator);
        using var v = randn([t, kvHeads * dh], generator: generator);
        using var qNorm = rand([dh], generator: generator) + 0.5f;
        using var kNorm = rand([dh], generator: generator) + 0.5f;
        var config = Qwen3Cluster.Model.Config.ModelPresets.Dense(1, 32, heads, kvHeads, dh, 64, false, vocab: 16);
        using var rope = new RotaryEmbedding(config, CPU);
        using var meta = new AttentionMetadata(context, CPU);
        var (cos, sin) = rope.Tables(meta.Positions);
        var layer = new AttentionLayer(0, heads, kvHeads, dh, 1 / Math.Sqrt(dh), window == 0 ? null : window, qNorm, kNorm, 1e-6);

        using var fastPool = new KvCachePool(0, 1, blocks, blockSize, kvHeads, dh, CPU);
        using var referencePool = new KvCachePool(0, 1, blocks, blockSize, kvHeads, dh, CPU);
        // Earlier tokens' keys and values, already cached.
        using var cachedKeys = randn(fastPool.Keys(0).shape, generator: generator);
        using var cachedValues = randn(fastPool.Values(0).shape, generator: generator);
        foreach (var pool in new[] { fastPool, referencePool })
        {
            pool.Keys(0).copy_(cachedKeys);
            pool.Values(0).copy_(cachedValues);
        }
        using var expected = TorchKernels.Shared.Attention(q.clone(), k.clone(), v.clone(), layer, cos, sin, meta, referencePool);
        using var actual = new CpuKernels(path).Attention(q.clone(), k.clone(), v.clone(), layer, cos, sin, meta, fastPool);

        double worst = (expected - actual).abs().max().item<float>();
        Assert.True(worst < 1e-4, $"{path} window {window} heads {heads}/{kvHeads} of {dh}: max |difference| {worst}");
        Assert.True((referencePool.Keys(0) - fastPool.Keys(0)).abs().max().item<float>() < 1e-5, "the new keys differ in the pool");
        Assert.Equal(referencePool.Values(0).data<float>().ToArray(), fastPool.Values(0).data<float>().ToArray());
        cos.Dispose();
        sin.Dispose();
    }
}
