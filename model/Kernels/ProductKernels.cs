using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// The one entry to the matrix kernels: y = x Wᵀ for a range of weight rows and a range of tokens, in the weight's
/// format, on a path. Every chunk of work the thread team hands out ends here.
/// </summary>
public static unsafe class ProductKernels
{
    /// <summary>
    /// How far ahead of its loads a one-token product asks for weights (bytes). Rows are short (a few KiB) and the
    /// hardware prefetchers stop at page ends and ramp up anew on each chunk of rows; asking 4 KiB ahead measured
    /// 15% more bandwidth on a bench-moe decode step's products (43.6 to 50.3 GB/s on the 2-core VM).
    /// </summary>
    internal const int PrefetchDistance = 4096;

    /// <summary>
    /// y[(t - t0) * ldy + (r - first)] = W[r] · x[t] for rows [first, last) of <paramref name="w"/> and tokens [t0, t1) of
    /// <paramref name="x"/>. Each weight row is read once for every four tokens.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(KernelPath path, in WeightView w, int first, int last, in PreparedInput x, int t0, int t1, float* y, long ldy)
    {
        switch (w.Format)
        {
            case WeightFormat.F32: F32Kernels.Rows(path, w, first, last, x, t0, t1, y, ldy); break;
            case WeightFormat.BF16: Bf16Kernels.Rows(path, w, first, last, x, t0, t1, y, ldy); break;
            case WeightFormat.Q8_0: Q8Kernels.Rows(path, w, first, last, x, t0, t1, y, ldy); break;
            case WeightFormat.Q8_0x8: Q8x8Kernels.Rows(path, w, first, last, x, t0, t1, y, ldy); break;
            default: throw new ArgumentOutOfRangeException(nameof(w), w.Format, "No kernel reads this weight format.");
        }
    }

    /// <summary>The sums of four vectors' lanes, [Σa, Σb, Σc, Σd]: halvings, then two rounds of pairwise adds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Sum4(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var a8 = a.GetLower() + a.GetUpper();
        var b8 = b.GetLower() + b.GetUpper();
        var c8 = c.GetLower() + c.GetUpper();
        var d8 = d.GetLower() + d.GetUpper();
        return Sum4(a8, b8, c8, d8);
    }

    /// <summary>[Σa, Σb, Σc, Σd] of four 256-bit vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Sum4(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d)
    {
        var ab = Sse3.HorizontalAdd(a.GetLower() + a.GetUpper(), b.GetLower() + b.GetUpper());
        var cd = Sse3.HorizontalAdd(c.GetLower() + c.GetUpper(), d.GetLower() + d.GetUpper());
        return Sse3.HorizontalAdd(ab, cd);
    }

    /// <summary>The first <paramref name="count"/> of four token sums of one row stored down a column of y (ldy apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreColumn(Vector128<float> sums, float* y, long ldy, int count)
    {
        y[0] = sums.GetElement(0);
        y[ldy] = sums.GetElement(1);
        if (count < 3) return;
        y[2 * ldy] = sums.GetElement(2);
        if (count < 4) return;
        y[3 * ldy] = sums.GetElement(3);
    }
}

/// <summary>
/// Per-thread room for the dots of one chunk before its epilogue (SiLU(gate) * up, the routing weights): a chunk is
/// a few hundred rows by a block of tokens, so it stays in the cache it was written to.
/// </summary>
static unsafe class ChunkTile
{
    public const int Tokens = 64;
    [ThreadStatic] static float* _buffer;
    [ThreadStatic] static long _capacity;

    /// <summary>Room for <paramref name="count"/> floats, this thread's until its next call.</summary>
    public static float* Take(long count)
    {
        if (count > _capacity)
        {
            if (_buffer != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(_buffer);
            _capacity = Math.Max(count, 16384);
            _buffer = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(_capacity * sizeof(float)), 64);
        }
        return _buffer;
    }
}
