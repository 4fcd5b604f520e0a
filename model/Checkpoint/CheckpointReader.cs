using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>
/// A Hugging Face checkpoint folder: <c>model.safetensors</c>, or shards listed by
/// <c>model.safetensors.index.json</c>. Shards are opened only when one of their tensors is asked for.
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    readonly string _directory;
    readonly Dictionary<string, string>? _weightMap;
    readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);

    public string Directory => _directory;

    CheckpointReader(string directory, Dictionary<string, string>? weightMap)
    {
        _directory = directory;
        _weightMap = weightMap;
    }

    public static CheckpointReader Open(string directory)
    {
        string index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index)) return new CheckpointReader(directory, ReadIndex(index));
        if (File.Exists(Path.Combine(directory, SingleFileName))) return new CheckpointReader(directory, null);
        throw new CheckpointException($"{directory}: no {SingleFileName} or {IndexFileName} found.");
    }

    static Dictionary<string, string> ReadIndex(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{path}: bad index: missing object 'weight_map'.");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                string? file = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                if (string.IsNullOrEmpty(file) || file.Contains('/') || file.Contains('\\') || file.Contains(".."))
                    throw new CheckpointException($"{path}: bad index: tensor '{entry.Name}' maps to '{entry.Value}', not a file name.");
                result[entry.Name] = file;
            }
            return result;
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{path}: bad index: not valid JSON ({e.Message}).");
        }
    }

    /// <summary>Every tensor name in the checkpoint (for a single file this opens it; for shards it reads only the index).</summary>
    public IEnumerable<string> TensorNames => _weightMap?.Keys ?? OpenFile(SingleFileName).Entries.Keys;

    public bool Contains(string name) =>
        _weightMap?.ContainsKey(name) ?? OpenFile(SingleFileName).Entries.ContainsKey(name);

    /// <summary>The header entry of a tensor and the file it is in.</summary>
    public (SafetensorsFile File, TensorEntry Entry) Locate(string name)
    {
        string fileName;
        if (_weightMap is null) fileName = SingleFileName;
        else if (!_weightMap.TryGetValue(name, out fileName!))
            throw new CheckpointException($"{Path.Combine(_directory, IndexFileName)}: missing tensor '{name}'.");
        var file = OpenFile(fileName);
        return (file, file.Entry(name));
    }

    /// <summary>As <see cref="Locate(string)"/>, and a tensor of another shape is an error that names its file.</summary>
    public (SafetensorsFile File, TensorEntry Entry) Locate(string name, long[] expectedShape)
    {
        var (file, entry) = Locate(name);
        if (!entry.Shape.SequenceEqual(expectedShape))
        {
            throw new CheckpointException(
                $"{file.Path}: tensor '{name}' has shape [{string.Join(", ", entry.Shape)}], expected [{string.Join(", ", expectedShape)}].");
        }
        return (file, entry);
    }

    /// <summary>
    /// Loads one tensor, checking its shape, converted to <paramref name="dtype"/> on <paramref name="device"/>.
    /// </summary>
    public Tensor Load(string name, long[] expectedShape, ScalarType dtype, Device device, Kernels.WeightArena? arena = null)
    {
        var (file, entry) = Locate(name, expectedShape);
        return file.WithBytes(entry, (pointer, length) =>
            TensorFactory.FromBytes(pointer, length, entry.DType, entry.Shape, dtype, device, arena));
    }

    SafetensorsFile OpenFile(string fileName)
    {
        lock (_open)
        {
            if (_open.TryGetValue(fileName, out var file)) return file;
            file = SafetensorsFile.Open(Path.Combine(_directory, fileName));
            _open[fileName] = file;
            return file;
        }
    }

    public void Dispose()
    {
        lock (_open)
        {
            foreach (var file in _open.Values) file.Dispose();
            _open.Clear();
        }
    }
}
