using System.Text.Json;

namespace Qwen3Cluster.Gateway;

/// <summary>Typed reads of an OpenAI request body, each refusal naming the field.</summary>
public sealed class OpenAiRequest(JsonElement root)
{
    public JsonElement Root => root;

    public bool Has(string name) => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Get(string name) => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw OpenAiException.Invalid(name, "must be a string")
        : null;

    public bool? Bool(string name) => Get(name) is { } v
        ? v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw OpenAiException.Invalid(name, "must be true or false"),
        }
        : null;

    public double? Number(string name, double min, double max, bool minExclusive = false)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || double.IsNaN(d))
            throw OpenAiException.Invalid(name, "must be a number");
        if (d < min || d > max || (minExclusive && d == min))
            throw OpenAiException.Invalid(name, $"must be in {(minExclusive ? "(" : "[")}{min}, {max}], got {d}");
        return d;
    }

    public long? Integer(string name, long min, long max)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long i))
            throw OpenAiException.Invalid(name, "must be an integer");
        if (i < min || i > max) throw OpenAiException.Invalid(name, $"must be between {min} and {max}, got {i}");
        return i;
    }

    /// <summary>A string or a list of strings (OpenAI's <c>stop</c>).</summary>
    public string[] Strings(string name)
    {
        if (Get(name) is not { } v) return [];
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw OpenAiException.Invalid(name, "must be a string or a list of strings");
        return v.EnumerateArray().Select(e => e.GetString()!).ToArray();
    }
}
