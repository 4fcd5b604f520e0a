using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>
/// One .safetensors file: the JSON header is read eagerly, the data is memory-mapped, so reading a
/// tensor touches only that tensor's pages.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    const long MaxHeaderBytes = 100L * 1024 * 1024;
    readonly Dictionary<string, TensorEntry> _entries;
    readonly long _dataOffset;
    readonly long _fileLength;
    MemoryMappedFile? _map;

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorEntry> Entries => _entries;
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsFile(string path, Dictionary<string, TensorEntry> entries, Dictionary<string, string> metadata,
        long dataOffset, long fileLength)
    {
        Path = path;
        _entries = entries;
        Metadata = metadata;
        _dataOffset = dataOffset;
        _fileLength = fileLength;
    }

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException($"{path}: file not found.");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = stream.Length;
        Span<byte> prefix = stackalloc byte[8];
        if (length < 8 || stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
            throw new CheckpointException($"{path}: truncated: {length} bytes, shorter than the 8-byte header length.");
        long headerLength = (long)BitConverter.ToUInt64(prefix);
        if (headerLength <= 0 || headerLength > MaxHeaderBytes)
            throw new CheckpointException($"{path}: bad header: header length {headerLength} is not plausible.");
        if (8 + headerLength > length)
        {
            throw new CheckpointException(
                $"{path}: truncated: the header claims {headerLength} bytes but the file has {length - 8} after the length.");
        }

        var header = new byte[headerLength];
        stream.ReadExactly(header);
        var (entries, metadata) = ParseHeader(path, header, length - 8 - headerLength);
        return new SafetensorsFile(path, entries, metadata, 8 + headerLength, length);
    }

    static (Dictionary<string, TensorEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{path}: bad header: not valid JSON ({e.Message}).");
        }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new CheckpointException($"{path}: bad header: the header is not a JSON object.");
        var entries = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in doc.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__")
            {
                if (property.Value.ValueKind == JsonValueKind.Object)
                {
                    foreach (var m in property.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                }

                continue;
            }
            var entry = ParseEntry(path, property);
            if (entry.End > dataLength)
            {
                throw new CheckpointException(
                    $"{path}: truncated: tensor '{entry.Name}' ends at byte {entry.End} of the data section, which has {dataLength}.");
            }

            entries[entry.Name] = entry;
        }
        return (entries, metadata);
    }

    static TensorEntry ParseEntry(string path, JsonProperty property)
    {
        string name = property.Name;
        var e = property.Value;
        CheckpointException Bad(string why) => new($"{path}: bad header for tensor '{name}': {why}.");
        if (e.ValueKind != JsonValueKind.Object) throw Bad("the entry is not an object");
        if (!e.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Bad("missing 'dtype'");
        if (!SafetensorsDTypes.TryParse(dtypeElement.GetString(), out var dtype))
            throw Bad($"dtype '{dtypeElement.GetString()}' is not supported (F32, BF16, F16)");
        if (!e.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Bad("missing 'shape'");
        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0) throw Bad("shape has a non-integer or negative dimension");
            shape[i++] = dim;
        }
        if (!e.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
        {
            throw Bad("'data_offsets' must be two increasing non-negative integers");
        }

        var entry = new TensorEntry(name, dtype, shape, begin, end);
        if (entry.ElementCount * dtype.ByteSize() != entry.ByteLength)
            throw Bad($"shape [{string.Join(", ", shape)}] of {dtype} needs {entry.ElementCount * dtype.ByteSize()} bytes but data_offsets span {entry.ByteLength}");
        return entry;
    }

    public TensorEntry Entry(string name) =>
        _entries.TryGetValue(name, out var entry) ? entry
            : throw new CheckpointException($"{Path}: missing tensor '{name}'.");

    /// <summary>
    /// Lends the address of one tensor's raw little-endian bytes for the duration of <paramref name="use"/>,
    /// through a view of just that tensor: only its pages are ever faulted in, and they leave this process's
    /// resident set when the view closes, so loading a checkpoint never holds the file and the weights at once.
    /// </summary>
    public unsafe T WithBytes<T>(TensorEntry entry, Func<IntPtr, long, T> use)
    {
        if (entry.ByteLength == 0) return use(IntPtr.Zero, 0);
        using var view = EnsureMapped().CreateViewAccessor(_dataOffset + entry.Begin, entry.ByteLength, MemoryMappedFileAccess.Read);
        byte* basePointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
        try
        {
            return use((IntPtr)(basePointer + view.PointerOffset), entry.ByteLength);
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    MemoryMappedFile EnsureMapped()
    {
        if (_map is not null) return _map;
        lock (_entries)
        {
            if (_map is not null) return _map;
            if (new FileInfo(Path).Length != _fileLength)
                throw new CheckpointException($"{Path}: the file changed size while it was open.");
            _map = MemoryMappedFile.CreateFromFile(Path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            return _map;
        }
    }

    public void Dispose() => _map?.Dispose();
}
