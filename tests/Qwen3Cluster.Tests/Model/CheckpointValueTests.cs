using System.Text;
using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Model;

/// <summary>Stored values decode to the numbers their bits spell, in a file written here byte by byte.</summary>
public sealed class CheckpointValueTests
{
    [Fact]
    public void Bf16AndF16ValuesDecodeToTheFloatsTheirBitsSpell()
    {
        // bfloat16: sign, 8 exponent bits, 7 mantissa bits. float16: sign, 5 exponent bits, 10 mantissa bits.
        ushort[] bf16 = [0x3F80, 0xC040, 0x3EAB, 0x4049, 0x0001, 0xFF80, 0x0000, 0x8000];
        float[] bf16Values = [1f, -3f, 0.333984375f, 3.140625f, MathF.Pow(2, -133), float.NegativeInfinity, 0f, -0f];
        ushort[] f16 = [0x3C00, 0xC200, 0x3555, 0x0001, 0x7BFF, 0x7C00];
        float[] f16Values = [1f, -3f, 0.333251953125f, MathF.Pow(2, -24), 65504f, float.PositiveInfinity];
        string dir = TestCheckpoints.NewDirectory("bits");
        WriteSafetensors(Path.Combine(dir, CheckpointReader.SingleFileName), ("a", "BF16", bf16), ("b", "F16", f16));
        using var reader = CheckpointReader.Open(dir);
        using var a = reader.Load("a", [bf16.Length], ScalarType.Float32, CPU);
        using var b = reader.Load("b", [f16.Length], ScalarType.Float32, CPU);
        Assert.Equal(bf16Values.Select(BitConverter.SingleToInt32Bits), a.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(f16Values.Select(BitConverter.SingleToInt32Bits), b.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>The safetensors layout: an 8-byte little-endian header length, the JSON header, the raw data.</summary>
    static void WriteSafetensors(string path, params (string Name, string DType, ushort[] Bits)[] tensors)
    {
        var header = new StringBuilder("{");
        long offset = 0;
        foreach (var (name, dtype, bits) in tensors)
        {
            header.Append($"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{bits.Length}],\"data_offsets\":[{offset},{offset + bits.Length * 2}]}},");
            offset += bits.Length * 2;
        }
        header.Length--;
        header.Append('}');
        var json = Encoding.UTF8.GetBytes(header.ToString());
        using var file = File.Create(path);
        file.Write(BitConverter.GetBytes((ulong)json.Length));
        file.Write(json);
        foreach (var (_, _, bits) in tensors)
            foreach (ushort value in bits) file.Write(BitConverter.GetBytes(value));
    }
}
