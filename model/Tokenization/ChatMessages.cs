using System.Text.Json;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// Reads conversations in the OpenAI / transformers shape: [{"role": "...", "content": "..."}, ...]; a malformed one is
/// refused with a <see cref="RequestError"/> naming the field.
/// </summary>
public static class ChatMessages
{
    public static readonly string[] Roles = ["system", "user", "assistant", "tool"];

    public static IReadOnlyList<ChatMessage> ParseFile(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return Parse(doc.RootElement);
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: not valid JSON ({e.Message}).");
        }
    }

    public static IReadOnlyList<ChatMessage> Parse(JsonElement array)
    {
        if (array.ValueKind != JsonValueKind.Array) throw RequestError.Invalid("messages", "must be a JSON array");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw RequestError.Invalid(at, "must be an object");
            string role = item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()!
                : throw RequestError.Invalid($"{at}.role", "missing or not a string");
            if (!Roles.Contains(role)) throw RequestError.Invalid($"{at}.role", $"'{role}' is not one of {string.Join(", ", Roles)}");
            string? content = item.TryGetProperty("content", out var c) ? Content(c, at) : null;
            string? reasoning = item.TryGetProperty("reasoning_content", out var rc) && rc.ValueKind == JsonValueKind.String ? rc.GetString() : null;
            IReadOnlyList<ChatToolCall>? calls = null;
            if (item.TryGetProperty("tool_calls", out var tc) && tc.ValueKind == JsonValueKind.Array)
                calls = tc.EnumerateArray().Select((call, j) => ToolCall(call, $"{at}.tool_calls[{j}]")).ToArray();
            messages.Add(new ChatMessage(role, content, reasoning, calls));
        }
        return messages;
    }

    /// <summary>A string, or OpenAI's list of parts of which the text parts are joined.</summary>
    static string? Content(JsonElement c, string at) => c.ValueKind switch
    {
        JsonValueKind.String => c.GetString(),
        JsonValueKind.Null => null,
        JsonValueKind.Array => string.Concat(c.EnumerateArray().Select(part =>
            part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
                && t.GetString() == "text" && part.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String
                ? text.GetString()
                : throw RequestError.Invalid($"{at}.content", "only text parts are supported"))),
        _ => throw RequestError.Invalid($"{at}.content", "must be a string or a list of text parts"),
    };

    static ChatToolCall ToolCall(JsonElement call, string at)
    {
        if (call.ValueKind != JsonValueKind.Object) throw RequestError.Invalid(at, "must be an object");
        var function = call.TryGetProperty("function", out var f) ? f : call;
        if (function.ValueKind != JsonValueKind.Object) throw RequestError.Invalid($"{at}.function", "must be an object");
        string name = function.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()!
            : throw RequestError.Invalid($"{at}.function.name", "missing or not a string");
        var arguments = function.TryGetProperty("arguments", out var a) ? a.Clone() : JsonDocument.Parse("{}").RootElement.Clone();
        return new ChatToolCall(name, arguments);
    }
}
