using System.Text.Json;
using System.Text.RegularExpressions;
using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// A chat request's <c>tools</c> and <c>tool_choice</c>, checked: the tool definitions the chat template renders, and
/// what the reply may do with them. <c>none</c>: the reply is plain content. <c>auto</c> (the default with tools):
/// calls the model writes are parsed into <c>tool_calls</c>. <c>required</c> and a named function: the reply is made to
/// begin a call (the assistant turn starts with <c>&lt;tool_call&gt;</c> and, for a named function, its name), which a
/// real Qwen3 checkpoint completes, and the rest of the call is held to the tools' names and their <c>parameters</c>
/// schemas (<see cref="Calls"/>), so even a model that would not write a call writes a valid one.
/// </summary>
public sealed partial record ToolChoice(IReadOnlyList<JsonElement> Tools, string Mode, string? Function)
{
    public const string None = "none", Auto = "auto", Required = "required", Named = "function";

    public static readonly ToolChoice NoTools = new([], None, null);

    /// <summary>Whether replies are read for calls.</summary>
    public bool ParsesCalls => Tools.Count > 0 && Mode != None;

    /// <summary>What the assistant turn starts with, after the generation prompt: the forced opening of a call, or nothing.</summary>
    public string ForcedPrefix => Mode switch
    {
        Required => "<tool_call>\n{\"name\": \"",
        Named => $"<tool_call>\n{{\"name\": \"{Function}\", \"arguments\": ",
        _ => "",
    };

    /// <summary>The constraint on what follows <see cref="ForcedPrefix"/>: for required, some tool's name and arguments (and perhaps more calls); for a named function, its arguments.</summary>
    public OutputConstraint? Calls()
    {
        if (Mode is not (Required or Named)) return null;
        var tools = Tools.Select(t => t.GetProperty("function"))
            .Where(f => Mode == Required || f.GetProperty("name").GetString() == Function)
            .Select(f => new Dictionary<string, object?>
            {
                ["name"] = f.GetProperty("name").GetString(),
                ["parameters"] = f.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object ? p : null,
            });
        return new OutputConstraint(ConstraintKind.ToolCalls, JsonSerializer.Serialize(new { mode = Mode == Required ? "required" : "named", tools }));
    }

    [GeneratedRegex("^[a-zA-Z0-9_.-]{1,64}$")]
    private static partial Regex FunctionName();

    /// <summary>Reads <c>tools</c> and <c>tool_choice</c>; a problem is an InvalidArgument naming the field.</summary>
    public static ToolChoice Parse(JsonElement? tools, JsonElement? choice)
    {
        var list = new List<JsonElement>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        if (tools is { } t)
        {
            if (t.ValueKind != JsonValueKind.Array) throw RequestError.Invalid("tools", "must be an array of tools");
            int i = 0;
            foreach (var tool in t.EnumerateArray())
            {
                string at = $"tools[{i++}]";
                if (tool.ValueKind != JsonValueKind.Object) throw RequestError.Invalid(at, "must be an object");
                if (!tool.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function")
                    throw RequestError.Invalid($"{at}.type", "must be \"function\"");
                if (!tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object)
                    throw RequestError.Invalid($"{at}.function", "is required and must be an object");
                if (!function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !FunctionName().IsMatch(name.GetString()!))
                    throw RequestError.Invalid($"{at}.function.name", "is required: 1 to 64 letters, digits, '_', '.' or '-'");
                if (!names.Add(name.GetString()!)) throw RequestError.Invalid($"{at}.function.name", $"'{name.GetString()}' is defined twice");
                if (function.TryGetProperty("description", out var d) && d.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                    throw RequestError.Invalid($"{at}.function.description", "must be a string");
                if (function.TryGetProperty("parameters", out var p) && p.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
                    throw RequestError.Invalid($"{at}.function.parameters", "must be a JSON Schema object");
                list.Add(tool.Clone());
            }
        }

        string mode = list.Count > 0 ? Auto : None;
        string? named = null;
        if (choice is { } c)
        {
            if (c.ValueKind == JsonValueKind.String)
            {
                mode = c.GetString() switch
                {
                    None => None,
                    Auto => Auto,
                    Required => Required,
                    var other => throw RequestError.Invalid("tool_choice", $"'{other}' is not one of none, auto, required, or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"),
                };
            }
            else if (c.ValueKind == JsonValueKind.Object && c.TryGetProperty("function", out var f) && f.ValueKind == JsonValueKind.Object
                     && f.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String)
            {
                mode = Named;
                named = n.GetString()!;
                if (!names.Contains(named)) throw RequestError.Invalid("tool_choice.function.name", $"'{named}' is not one of the tools");
            }
            else
            {
                throw RequestError.Invalid("tool_choice", "must be none, auto, required, or {\"type\": \"function\", \"function\": {\"name\": ...}}");
            }
            if (mode is Required or Named && list.Count == 0) throw RequestError.Invalid("tool_choice", $"'{(named ?? mode)}' needs tools");
        }
        return new ToolChoice(list, mode, named);
    }
}
