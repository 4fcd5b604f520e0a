using System.Text.Json;

namespace Qwen3Cluster.Model.Constraints;

/// <summary>The grammar of each kind of <see cref="OutputConstraint"/>; a constraint that cannot be one throws <see cref="GrammarException"/>.</summary>
public static class ConstraintGrammar
{
    public static Grammar Compile(OutputConstraint constraint) => constraint.Kind switch
    {
        ConstraintKind.JsonSchema => JsonSchemaGrammar.Compile(Parse(constraint.Source)),
        ConstraintKind.Regex => RegexParser.Parse(constraint.Source),
        ConstraintKind.Choice => Choice(constraint.Source),
        ConstraintKind.ToolCalls => ToolCalls(Parse(constraint.Source)),
        _ => throw new GrammarException($"unknown constraint kind {constraint.Kind}"),
    };

    static JsonElement Parse(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new GrammarException($"not valid JSON: {e.Message}");
        }
    }

    static Grammar Choice(string source)
    {
        var choices = Parse(source);
        if (choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0
            || choices.EnumerateArray().Any(c => c.ValueKind != JsonValueKind.String || c.GetString()!.Length == 0))
        {
            throw new GrammarException("must be a non-empty list of non-empty strings");
        }
        return Grammar.Alt(choices.EnumerateArray().Select(c => Grammar.Text(c.GetString()!)));
    }

    /// <summary>
    /// Hermes calls as Qwen3 writes them, continuing the forced opening: for <c>required</c>, a tool's name, its
    /// arguments, the end of the call, and then perhaps more calls; for <c>named</c>, that tool's arguments and the end.
    /// </summary>
    static Grammar ToolCalls(JsonElement spec)
    {
        string mode = spec.GetProperty("mode").GetString()!;
        var tools = spec.GetProperty("tools").EnumerateArray().Select((t, i) =>
        {
            string name = t.GetProperty("name").GetString()!;
            Grammar arguments;
            try
            {
                arguments = t.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object
                    ? JsonSchemaGrammar.Compile(p) : JsonGrammar.AnyObject(JsonSchemaGrammar.AnyDepth);
            }
            catch (GrammarException e)
            {
                throw new GrammarException(e.Message, $"tools[{i}].function.parameters" + (e.Path is { Length: > 0 } at ? "." + at : ""));
            }
            return (Name: name, Arguments: arguments);
        }).ToList();
        var end = Grammar.Text("}\n</tool_call>");
        if (mode == "named") return Grammar.Seq(tools[0].Arguments, end);
        Grammar Call() => Grammar.Alt(tools.Select(t => Grammar.Seq(Grammar.Text(t.Name + "\", \"arguments\": "), t.Arguments, end)));
        return Grammar.Seq(Call(), Grammar.Star(Grammar.Seq(Grammar.Text("\n<tool_call>\n{\"name\": \""), Call())));
    }
}
