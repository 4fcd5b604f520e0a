using Qwen3Cluster.Grains;
using static TorchSharp.torch;

namespace Qwen3Cluster.ClusterTests;

/// <summary>A stage's outputs written into kept arrays: the same array for the same length, the values of the tensor each time.</summary>
public sealed class TensorPayloadTests
{
    static float[] Values(Tensor t)
    {
        using var c = t.contiguous();
        return c.data<float>().ToArray();
    }

    [Fact]
    public void OutputsOfOneLengthReuseOneArrayAndCarryTheirOwnValues()
    {
        var buffers = new Dictionary<long, byte[]>();
        using var first = arange(0f, 12f).reshape(3, 4);
        using var second = arange(100f, 112f).reshape(3, 4);
        using var other = arange(0f, 8f).reshape(2, 4);

        var a = first.ToPayload(buffers);
        using (var back = a.ToTensor(CPU)) Assert.Equal(Values(first), Values(back));
        var b = second.ToPayload(buffers);
        Assert.Same(a.Data, b.Data);
        using (var back = b.ToTensor(CPU)) Assert.Equal(Values(second), Values(back));
        Assert.Equal([3L, 4L], b.Shape);

        var c = other.ToPayload(buffers);
        Assert.NotSame(a.Data, c.Data);
        using (var back = c.ToTensor(CPU)) Assert.Equal(Values(other), Values(back));

        // A transposed (non-contiguous) tensor is written in its logical order, as ToPayload() writes it.
        using var transposed = arange(0f, 12f).reshape(4, 3).t();
        using (var back = transposed.ToPayload(buffers).ToTensor(CPU)) Assert.Equal(Values(transposed), Values(back));
        using (var plain = transposed.ToPayload().ToTensor(CPU)) Assert.Equal(Values(transposed), Values(plain));

        // Lengths beyond the few kept start the set over.
        for (int rows = 1; rows <= TensorPayloads.MaxBuffers + 2; rows++)
        {
            using var t = ones(rows, 5);
            t.ToPayload(buffers);
        }
        Assert.True(buffers.Count <= TensorPayloads.MaxBuffers);
    }
}
