using System.Text.Json;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>Typed access to one JSON file that reports the file and field on every failure.</summary>
sealed class JsonFieldReader(string file)
{
    public string File { get; } = file;

    public static JsonDocument Parse(string path)
    {
        string name = Path.GetFileName(path);
        if (!System.IO.File.Exists(path))
        {
            throw new TokenizerFormatException(name, "$", $"cannot be read: file not found at '{path}'");
        }

        try
        {
            using FileStream stream = System.IO.File.OpenRead(path);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(name, "$", $"is not valid JSON: {e.Message}", e);
        }
    }

    public TokenizerFormatException Error(string field, string problem) => new(File, field, problem);

    public JsonElement Required(JsonElement parent, string name, string path, JsonValueKind kind)
    {
        JsonElement value = Optional(parent, name, path)
            ?? throw Error(Join(path, name), "is missing");
        Expect(value, Join(path, name), kind);
        return value;
    }

    public JsonElement? Optional(JsonElement parent, string name, string path)
    {
        Expect(parent, path, JsonValueKind.Object);
        return parent.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null
            ? value
            : null;
    }

    public string RequiredString(JsonElement parent, string name, string path) =>
        Required(parent, name, path, JsonValueKind.String).GetString()!;

    public string? OptionalString(JsonElement parent, string name, string path)
    {
        JsonElement? value = Optional(parent, name, path);
        if (value is null) return null;

        Expect(value.Value, Join(path, name), JsonValueKind.String);
        return value.Value.GetString();
    }

    public bool OptionalBool(JsonElement parent, string name, string path, bool fallback)
    {
        JsonElement? value = Optional(parent, name, path);
        if (value is null) return fallback;

        return value.Value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(Join(path, name), $"must be a boolean, not {Describe(value.Value.ValueKind)}"),
        };
    }

    public int RequiredInt(JsonElement parent, string name, string path)
    {
        JsonElement value = Required(parent, name, path, JsonValueKind.Number);
        return value.TryGetInt32(out int result) && result >= 0
            ? result
            : throw Error(Join(path, name), $"must be a non-negative 32-bit integer, not {value.GetRawText()}");
    }

    public void Expect(JsonElement value, string path, JsonValueKind kind)
    {
        if (value.ValueKind != kind)
        {
            throw Error(path, $"must be {Describe(kind)}, not {Describe(value.ValueKind)}");
        }
    }

    public static string Join(string path, string name) => path == "$" || path.Length == 0 ? name : $"{path}.{name}";

    static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
