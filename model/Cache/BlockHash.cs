using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Qwen3Cluster.Model.Cache;

/// <summary>
/// The identity of a full KV block's contents: SHA-256 of the previous block's hash and this block's token ids,
/// so it names the whole prefix up to the block's end. Cryptographic, so two different prefixes never share one.
/// </summary>
public readonly record struct BlockHash(ulong A, ulong B, ulong C, ulong D)
{
    public static BlockHash Of(BlockHash? previous, ReadOnlySpan<int> tokens)
    {
        Span<byte> input = stackalloc byte[32 + tokens.Length * sizeof(int)];
        if (previous is { } p) MemoryMarshal.Write(input, in p);
        MemoryMarshal.AsBytes(tokens).CopyTo(input[32..]);
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(input, digest);
        return MemoryMarshal.Read<BlockHash>(digest);
    }

    /// <summary>Appends to <paramref name="chain"/> the hashes of the full blocks of <paramref name="tokens"/> it lacks.</summary>
    public static void Extend(List<BlockHash> chain, IReadOnlyList<int> tokens, int blockSize)
    {
        int full = tokens.Count / blockSize;
        var buffer = new int[blockSize];
        for (int b = chain.Count; b < full; b++)
        {
            for (int i = 0; i < blockSize; i++) buffer[i] = tokens[b * blockSize + i];
            chain.Add(Of(b == 0 ? null : chain[b - 1], buffer));
        }
    }
}
