using System.Text.Json;

namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// A JSON Schema compiled to the grammar of the JSON texts it accepts, in <see cref="JsonGrammar"/>'s style:
/// <c>type</c> (one or a list), <c>properties</c> in their order with <c>required</c>, free-form objects
/// (<c>additionalProperties</c> absent, true or a schema, when there are no <c>properties</c>), <c>items</c>,
/// <c>prefixItems</c>, <c>minItems</c>/<c>maxItems</c>, <c>enum</c>, <c>const</c>, strings with
/// <c>minLength</c>/<c>maxLength</c>/<c>pattern</c> and the formats date, time, date-time and uuid, integers with
/// <c>minimum</c>/<c>maximum</c> (and their exclusive forms), non-negative numbers, <c>anyOf</c>/<c>oneOf</c>,
/// <c>allOf</c> of one schema, and <c>$ref</c> into the schema (<c>#</c>, <c>#/$defs/...</c>, <c>#/definitions/...</c>),
/// recursion cut at <see cref="MaxRecursion"/> levels. As in xgrammar, an object with <c>properties</c> gets no
/// others. Keywords that constrain values in ways not listed here are refused, naming them; annotations are ignored.
/// </summary>
public sealed class JsonSchemaGrammar
{
    public const int MaxRecursion = 3;
    /// <summary>How deep values a schema leaves open (<c>true</c>, a free-form object's values) may nest.</summary>
    public const int AnyDepth = 3;

    static readonly HashSet<string> Annotations =
    [
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
        "$defs", "definitions", "nullable", "discriminator", "contentMediaType", "contentEncoding",
    ];

    static readonly HashSet<string> Supported =
    [
        "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "enum", "const",
        "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "anyOf", "oneOf", "allOf", "$ref",
    ];

    readonly JsonElement _root;
    readonly Dictionary<string, int> _expanding = [];

    JsonSchemaGrammar(JsonElement root) => _root = root;

    public static Grammar Compile(JsonElement schema)
    {
        var grammar = new JsonSchemaGrammar(schema).Value(schema, "");
        if (grammar.IsNothing) throw new GrammarException($"the schema admits no value within {MaxRecursion} levels of recursion");
        return grammar;
    }

    static string At(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    Grammar Value(JsonElement schema, string path)
    {
        if (schema.ValueKind == JsonValueKind.True) return JsonGrammar.Any(AnyDepth);
        if (schema.ValueKind == JsonValueKind.False) return Grammar.Nothing;
        if (schema.ValueKind != JsonValueKind.Object) throw new GrammarException("a schema must be an object or a boolean", path);
        foreach (var p in schema.EnumerateObject())
        {
            if (!Supported.Contains(p.Name) && !Annotations.Contains(p.Name) && !p.Name.StartsWith("x-", StringComparison.Ordinal))
                throw new GrammarException($"the keyword '{p.Name}' is not supported", At(path, p.Name));
        }
        if (schema.TryGetProperty("$ref", out var reference)) return Reference(reference, path);
        if (schema.TryGetProperty("const", out var constant)) return JsonGrammar.Literal(constant);
        if (schema.TryGetProperty("enum", out var members))
        {
            if (members.ValueKind != JsonValueKind.Array || members.GetArrayLength() == 0) throw new GrammarException("must be a non-empty array", At(path, "enum"));
            return Grammar.Alt(members.EnumerateArray().Select(JsonGrammar.Literal));
        }
        foreach (string combinator in (ReadOnlySpan<string>)["anyOf", "oneOf"])
        {
            if (!schema.TryGetProperty(combinator, out var choices)) continue;
            if (choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0) throw new GrammarException("must be a non-empty array", At(path, combinator));
            return Grammar.Alt(choices.EnumerateArray().Select((c, i) => Value(c, $"{At(path, combinator)}[{i}]")));
        }
        if (schema.TryGetProperty("allOf", out var all))
        {
            if (all.ValueKind != JsonValueKind.Array || all.GetArrayLength() != 1)
                throw new GrammarException("is supported with exactly one schema", At(path, "allOf"));
            return Value(all[0], $"{At(path, "allOf")}[0]");
        }
        var types = Types(schema, path);
        return Grammar.Alt(types.Select(t => Typed(t, schema, path)));
    }

    static IReadOnlyList<string> Types(JsonElement schema, string path)
    {
        if (schema.TryGetProperty("type", out var type))
        {
            if (type.ValueKind == JsonValueKind.String) return [type.GetString()!];
            if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0 && type.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String))
                return type.EnumerateArray().Select(t => t.GetString()!).ToArray();
            throw new GrammarException("must be a type name or a list of them", At(path, "type"));
        }
        if (schema.TryGetProperty("properties", out _) || schema.TryGetProperty("additionalProperties", out _)) return ["object"];
        if (schema.TryGetProperty("items", out _) || schema.TryGetProperty("prefixItems", out _)) return ["array"];
        if (schema.TryGetProperty("pattern", out _) || schema.TryGetProperty("minLength", out _) || schema.TryGetProperty("maxLength", out _)) return ["string"];
        return ["object", "array", "string", "number", "boolean", "null"];
    }

    Grammar Typed(string type, JsonElement schema, string path) => type switch
    {
        "null" => JsonGrammar.Null,
        "boolean" => JsonGrammar.Boolean,
        "string" => String(schema, path),
        "integer" => Integer(schema, path),
        "number" => Number(schema, path),
        "array" => Array(schema, path),
        "object" => Object(schema, path),
        _ => throw new GrammarException($"'{type}' is not a JSON Schema type", At(path, "type")),
    };

    Grammar Reference(JsonElement reference, string path)
    {
        string at = At(path, "$ref");
        if (reference.ValueKind != JsonValueKind.String || reference.GetString() is not { } pointer || !pointer.StartsWith('#'))
            throw new GrammarException("only references into this schema ('#', '#/$defs/...') are supported", at);
        var target = _root;
        foreach (string raw in pointer.Length > 1 ? pointer[1..].TrimStart('/').Split('/') : [])
        {
            string key = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
            if (target.ValueKind == JsonValueKind.Object && target.TryGetProperty(key, out var next)) target = next;
            else if (target.ValueKind == JsonValueKind.Array && int.TryParse(key, out int i) && i >= 0 && i < target.GetArrayLength()) target = target[i];
            else throw new GrammarException($"'{pointer}' does not resolve", at);
        }
        int depth = _expanding.GetValueOrDefault(pointer);
        if (depth >= MaxRecursion) return Grammar.Nothing;
        _expanding[pointer] = depth + 1;
        try
        {
            return Value(target, pointer);
        }
        finally
        {
            _expanding[pointer] = depth;
        }
    }

    static int? Count(JsonElement schema, string key, string path)
    {
        if (!schema.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || n < 0) throw new GrammarException("must be a non-negative integer", At(path, key));
        if (n > RegexParser.MaxRepeat) throw new GrammarException($"above {RegexParser.MaxRepeat} is not supported", At(path, key));
        return n;
    }

    static Grammar String(JsonElement schema, string path)
    {
        if (schema.TryGetProperty("pattern", out var pattern))
        {
            if (pattern.ValueKind != JsonValueKind.String) throw new GrammarException("must be a string", At(path, "pattern"));
            if (schema.TryGetProperty("minLength", out _) || schema.TryGetProperty("maxLength", out _))
                throw new GrammarException("pattern with minLength or maxLength is not supported: put the length in the pattern", At(path, "pattern"));
            try
            {
                return JsonGrammar.StringMatching(RegexParser.Parse(pattern.GetString()!));
            }
            catch (GrammarException e)
            {
                throw new GrammarException(e.Message, At(path, "pattern"));
            }
        }
        if (schema.TryGetProperty("format", out var format) && format.ValueKind == JsonValueKind.String && Formats.TryGetValue(format.GetString()!, out var regex))
            return JsonGrammar.StringMatching(RegexParser.Parse(regex));
        int min = Count(schema, "minLength", path) ?? 0;
        int? max = Count(schema, "maxLength", path);
        if (max < min) throw new GrammarException("is below minLength", At(path, "maxLength"));
        return JsonGrammar.String(min, max);
    }

    /// <summary>The formats enforced (others are annotations, as JSON Schema 2020-12 has them by default).</summary>
    static readonly Dictionary<string, string> Formats = new()
    {
        ["date"] = @"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
        ["time"] = @"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
        ["date-time"] = @"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
        ["uuid"] = @"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    };

    static Grammar Integer(JsonElement schema, string path)
    {
        long? lo = Bound(schema, "minimum", path, exclusive: false, lower: true) ?? Bound(schema, "exclusiveMinimum", path, exclusive: true, lower: true);
        long? hi = Bound(schema, "maximum", path, exclusive: false, lower: false) ?? Bound(schema, "exclusiveMaximum", path, exclusive: true, lower: false);
        if (lo is null && hi is null) return JsonGrammar.Integer;
        if (lo > hi) throw new GrammarException("the range of integers is empty", path);
        return IntegerRange.Of(lo, hi);
    }

    /// <summary>An integer bound; a fractional one rounds inwards.</summary>
    static long? Bound(JsonElement schema, string key, string path, bool exclusive, bool lower)
    {
        if (!schema.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || Math.Abs(d) > 1e15) throw new GrammarException("must be a number within ±1e15", At(path, key));
        double bound = lower ? (exclusive ? Math.Floor(d) + 1 : Math.Ceiling(d)) : (exclusive ? Math.Ceiling(d) - 1 : Math.Floor(d));
        return (long)bound;
    }

    static Grammar Number(JsonElement schema, string path)
    {
        foreach (string key in (ReadOnlySpan<string>)["maximum", "exclusiveMaximum", "exclusiveMinimum"])
        {
            if (schema.TryGetProperty(key, out _)) throw new GrammarException("is supported for integers only", At(path, key));
        }
        if (!schema.TryGetProperty("minimum", out var min)) return JsonGrammar.Number();
        if (min.ValueKind == JsonValueKind.Number && min.GetDouble() == 0) return JsonGrammar.Number(negative: false);
        throw new GrammarException("is supported for numbers only as 0 (integers take any bound)", At(path, "minimum"));
    }

    Grammar Array(JsonElement schema, string path)
    {
        int min = Count(schema, "minItems", path) ?? 0;
        int? max = Count(schema, "maxItems", path);
        if (max < min) throw new GrammarException("is below minItems", At(path, "maxItems"));
        var prefix = new List<Grammar>();
        if (schema.TryGetProperty("prefixItems", out var tuple))
        {
            if (tuple.ValueKind != JsonValueKind.Array) throw new GrammarException("must be an array of schemas", At(path, "prefixItems"));
            prefix.AddRange(tuple.EnumerateArray().Select((s, i) => Value(s, $"{At(path, "prefixItems")}[{i}]")));
        }
        var items = schema.TryGetProperty("items", out var itemSchema) ? Value(itemSchema, At(path, "items"))
            : prefix.Count > 0 ? Grammar.Nothing : JsonGrammar.Any(AnyDepth - 1);
        if (prefix.Count == 0) return JsonGrammar.Array(items, min, max);
        // A tuple: its items in order (each later one optional past minItems), then more of items.
        var choices = new List<Grammar>();
        for (int n = Math.Min(min, prefix.Count); n <= prefix.Count && (max is null || n <= max); n++)
        {
            var head = Grammar.Seq(prefix.Take(n).Select((p, i) => i == 0 ? p : Grammar.Seq(JsonGrammar.ItemSeparator, p)));
            var rest = n < prefix.Count ? Grammar.Empty
                : Grammar.Repeat(Grammar.Seq(JsonGrammar.ItemSeparator, items), Math.Max(min - n, 0), max - n);
            if (n == 0) choices.Add(Grammar.Empty);
            else choices.Add(Grammar.Seq(head, rest));
        }
        return Grammar.Seq(Grammar.Text("["), Grammar.Alt(choices), Grammar.Text("]"));
    }

    Grammar Object(JsonElement schema, string path)
    {
        if (!schema.TryGetProperty("properties", out var properties) || properties.ValueKind == JsonValueKind.Object && !properties.EnumerateObject().Any())
        {
            var extra = schema.TryGetProperty("additionalProperties", out var additional) ? additional : default;
            if (extra.ValueKind == JsonValueKind.False) return Grammar.Text("{}");
            var value = extra.ValueKind == JsonValueKind.Undefined || extra.ValueKind == JsonValueKind.True
                ? JsonGrammar.Any(AnyDepth - 1) : Value(extra, At(path, "additionalProperties"));
            if (schema.TryGetProperty("required", out var needed) && needed.GetArrayLength() > 0)
                throw new GrammarException("is supported only with properties that list them", At(path, "required"));
            return JsonGrammar.Object(value);
        }
        if (properties.ValueKind != JsonValueKind.Object) throw new GrammarException("must be an object", At(path, "properties"));
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("required", out var list))
        {
            if (list.ValueKind != JsonValueKind.Array || list.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
                throw new GrammarException("must be an array of property names", At(path, "required"));
            foreach (var name in list.EnumerateArray())
            {
                if (!properties.TryGetProperty(name.GetString()!, out _))
                    throw new GrammarException($"'{name.GetString()}' is not one of the properties", At(path, "required"));
                required.Add(name.GetString()!);
            }
        }
        var members = new List<(Grammar Member, bool Required)>();
        foreach (var p in properties.EnumerateObject())
        {
            var value = Value(p.Value, At(At(path, "properties"), p.Name));
            bool isRequired = required.Contains(p.Name);
            // A property whose schema admits nothing (recursion cut off) can only be left out.
            if (value.IsNothing)
            {
                if (isRequired) return Grammar.Nothing;
                continue;
            }
            members.Add((Grammar.Seq(JsonGrammar.Key(p.Name), JsonGrammar.KeySeparator, value), isRequired));
        }
        return Grammar.Seq(Grammar.Text("{"), Members(members), Grammar.Text("}"));
    }

    /// <summary>
    /// The members in their order, each optional one present or not: a choice of which member comes first (none
    /// before it but optional ones), then each later one with a leading separator.
    /// </summary>
    static Grammar Members(List<(Grammar Member, bool Required)> members)
    {
        var choices = new List<Grammar>();
        for (int first = 0; first < members.Count; first++)
        {
            var rest = members.Skip(first + 1).Select(m =>
                m.Required ? Grammar.Seq(JsonGrammar.ItemSeparator, m.Member) : Grammar.Optional(Grammar.Seq(JsonGrammar.ItemSeparator, m.Member)));
            choices.Add(Grammar.Seq([members[first].Member, .. rest]));
            if (members[first].Required) break;
        }
        if (members.All(m => !m.Required)) choices.Add(Grammar.Empty);
        return Grammar.Alt(choices);
    }
}
