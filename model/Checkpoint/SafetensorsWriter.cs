using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>A tensor to be written: its name, shape and stored dtype, and how to make its values when its turn comes.</summary>
public sealed record TensorSpec(string Name, long[] Shape, SafetensorsDType DType, Func<Tensor> Values)
{
    public long ByteLength => Shape.Aggregate(1L, (a, b) => a * b) * DType.ByteSize();
}

/// <summary>
/// Writes safetensors files (one, or shards with model.safetensors.index.json), making each tensor only when it
/// is written so a checkpoint never has to be in memory at once.
/// </summary>
public static class SafetensorsWriter
{
    public static void WriteCheckpoint(string directory, IReadOnlyList<TensorSpec> tensors, int shards = 1,
        IProgress<(int Written, int Total)>? progress = null)
    {
        if (shards < 1) throw new ArgumentOutOfRangeException(nameof(shards));
        Directory.CreateDirectory(directory);
        int written = 0;
        if (shards == 1)
        {
            WriteFile(Path.Combine(directory, CheckpointReader.SingleFileName), tensors, () => progress?.Report((++written, tensors.Count)));
            return;
        }
        long total = tensors.Sum(t => t.ByteLength);
        long perShard = (total + shards - 1) / shards;
        var groups = new List<List<TensorSpec>> { new() };
        long size = 0;
        foreach (var t in tensors)
        {
            if (size > 0 && size + t.ByteLength > perShard && groups.Count < shards)
            {
                groups.Add([]);
                size = 0;
            }
            groups[^1].Add(t);
            size += t.ByteLength;
        }
        while (groups.Count < shards) groups.Add([]);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < groups.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{groups.Count:D5}.safetensors";
            WriteFile(Path.Combine(directory, file), groups[i], () => progress?.Report((++written, tensors.Count)));
            foreach (var t in groups[i]) weightMap[t.Name] = file;
        }
        var index = new { metadata = new { total_size = total }, weight_map = weightMap };
        File.WriteAllText(Path.Combine(directory, CheckpointReader.IndexFileName),
            JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
    }

    public static void WriteFile(string path, IReadOnlyList<TensorSpec> tensors, Action? written = null)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        long offset = 0;
        foreach (var t in tensors)
        {
            header[t.Name] = new { dtype = t.DType.Name(), shape = t.Shape, data_offsets = new[] { offset, offset + t.ByteLength } };
            offset += t.ByteLength;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8;
        string temporary = path + ".partial";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            stream.Write(BitConverter.GetBytes((ulong)padded));
            stream.Write(json);
            for (int i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var t in tensors)
            {
                using var values = t.Values();
                if (!values.shape.SequenceEqual(t.Shape))
                    throw new InvalidOperationException($"Tensor '{t.Name}' has shape [{string.Join(", ", values.shape)}], declared [{string.Join(", ", t.Shape)}].");
                using var stored = values.to(TensorFactory.ScalarTypeOf(t.DType)).cpu().contiguous();
                WriteBytes(stream, stored);
                written?.Invoke();
            }
        }
        File.Move(temporary, path, overwrite: true);
    }

    static void WriteBytes(Stream stream, Tensor tensor)
    {
        const long chunkElements = 1 << 26;
        using var flat = tensor.view(-1);
        for (long first = 0; first < flat.shape[0]; first += chunkElements)
        {
            using var chunk = flat.narrow(0, first, Math.Min(chunkElements, flat.shape[0] - first));
            stream.Write(chunk.bytes);
        }
    }
}
