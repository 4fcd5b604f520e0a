using System.Text.Json;
using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The output constraint an OpenAI request asks for, checked where it arrives: <c>response_format</c>
/// (<c>text</c>, <c>json_object</c>, <c>json_schema</c>), vLLM's extensions <c>guided_json</c>, <c>guided_regex</c>
/// and <c>guided_choice</c>, or the arguments of a call that <c>tool_choice</c> (<c>required</c> or a named function)
/// forces. At most one of them. A schema or regex that cannot be enforced is refused with the field and keyword.
/// </summary>
public static class ResponseFormat
{
    /// <summary>The schema of OpenAI's json_object: any JSON object.</summary>
    public const string AnyObject = """{"type": "object"}""";

    public static OutputConstraint? Parse(OpenAiRequest r, ToolChoice tools, ServedModel model)
    {
        var found = new List<(string Field, OutputConstraint Constraint)>();
        if (r.Get("response_format") is { } format && FromResponseFormat(format) is { } c) found.Add(("response_format", c));
        if (r.Get("guided_json") is { } json)
        {
            string schema = json.ValueKind switch
            {
                JsonValueKind.Object or JsonValueKind.True => json.GetRawText(),
                JsonValueKind.String => json.GetString()!,
                _ => throw RequestError.Invalid("guided_json", "must be a JSON Schema (an object, or its text)"),
            };
            found.Add(("guided_json", new OutputConstraint(ConstraintKind.JsonSchema, schema)));
        }
        if (r.String("guided_regex") is { } regex) found.Add(("guided_regex", new OutputConstraint(ConstraintKind.Regex, regex)));
        if (r.Get("guided_choice") is { } choice)
        {
            if (choice.ValueKind != JsonValueKind.Array || choice.GetArrayLength() == 0
                || choice.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String || e.GetString()!.Length == 0))
            {
                throw RequestError.Invalid("guided_choice", "must be a non-empty list of non-empty strings");
            }
            found.Add(("guided_choice", new OutputConstraint(ConstraintKind.Choice, choice.GetRawText())));
        }
        if (tools.Calls() is { } calls) found.Add(("tool_choice", calls));
        if (found.Count > 1) throw RequestError.Invalid(found[1].Field, $"cannot be combined with {found[0].Field}");
        if (found.Count == 0) return null;
        var (field, constraint) = found[0];
        Check(constraint, constraint.Kind == ConstraintKind.JsonSchema && field == "response_format" ? "response_format.json_schema.schema" : field, model);
        return constraint;
    }

    static OutputConstraint? FromResponseFormat(JsonElement format)
    {
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw RequestError.Invalid("response_format", "must be an object with a type: text, json_object or json_schema");
        switch (type.GetString())
        {
            case "text":
                return null;
            case "json_object":
                return new OutputConstraint(ConstraintKind.JsonSchema, AnyObject);
            case "json_schema":
                if (!format.TryGetProperty("json_schema", out var spec) || spec.ValueKind != JsonValueKind.Object)
                    throw RequestError.Invalid("response_format.json_schema", "is required with type json_schema and must be an object");
                if (spec.TryGetProperty("name", out var name) && name.ValueKind != JsonValueKind.String)
                    throw RequestError.Invalid("response_format.json_schema.name", "must be a string");
                if (!spec.TryGetProperty("schema", out var schema) || schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True))
                    throw RequestError.Invalid("response_format.json_schema.schema", "is required and must be a JSON Schema object");
                return new OutputConstraint(ConstraintKind.JsonSchema, schema.GetRawText());
            case var other:
                throw RequestError.Invalid("response_format.type", $"'{other}' is not one of text, json_object, json_schema");
        }
    }

    /// <summary>
    /// Compiles the constraint into the model's cache (the replica in this process finds it there), so a bad one is
    /// refused now; a refusal names <paramref name="at"/> and, for a schema, the keyword's place in it.
    /// </summary>
    public static void Check(OutputConstraint constraint, string at, ServedModel model)
    {
        if (model.Deployment.Tokenizer is null) throw new RequestError(ErrorKind.FailedPrecondition, at, $"model {model.Name} has no tokenizer: its output cannot be constrained");
        try
        {
            model.Deployment.Vocabulary!.Compile(constraint);
        }
        catch (GrammarException e)
        {
            string path = e.Path is { Length: > 0 } p ? (constraint.Kind == ConstraintKind.ToolCalls ? p : $"{at}.{p}") : at;
            throw RequestError.Invalid(path, e.Message);
        }
    }
}
