using System.Text.Json;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// Typed reads of an OpenAI request body, each refusal naming the field. Only the JSON type is checked here;
/// ranges are the business of <see cref="RequestLimits"/>, which checks the whole request once.
/// </summary>
public sealed class OpenAiRequest(JsonElement root)
{
    public bool Has(string name) => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Get(string name) => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw RequestError.Invalid(name, "must be a string")
        : null;

    public bool? Bool(string name) => Get(name) is { } v
        ? v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw RequestError.Invalid(name, "must be true or false"),
        }
        : null;

    public double? Number(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || double.IsNaN(d))
            throw RequestError.Invalid(name, "must be a number");
        return d;
    }

    public long? Integer(string name)
    {
        if (Get(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long i)) throw RequestError.Invalid(name, "must be an integer");
        return i;
    }

    /// <summary>An integer as an int, saturated: a value beyond int's range is refused by the range check that follows.</summary>
    public int? Int(string name) => Integer(name) is { } i ? (int)Math.Clamp(i, int.MinValue, int.MaxValue) : null;

    /// <summary>A string or a list of strings (OpenAI's <c>stop</c>).</summary>
    public string[] Strings(string name)
    {
        if (Get(name) is not { } v) return [];
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            throw RequestError.Invalid(name, "must be a string or a list of strings");
        return v.EnumerateArray().Select(e => e.GetString()!).ToArray();
    }
}
