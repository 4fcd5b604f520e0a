using System.Text;
using System.Text.Json;
using Json.Schema;
using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Tests.Tokenization;

namespace Qwen3Cluster.Tests.Constraints;

/// <summary>
/// Constraints over Qwen3's real vocabulary: the trie walk's mask equals checking every token one by one, and random
/// tokens drawn under the mask (the worst case: a model that never wants the structure) always make output that
/// validates against its schema (checked by JsonSchema.Net), within a tight token budget.
/// </summary>
public sealed class TokenConstraintTests
{
    static readonly Lazy<TokenVocabulary> LazyVocabulary = new(() => TokenVocabulary.For(TokenizerTestData.Tokenizer));
    static TokenVocabulary Vocabulary => LazyVocabulary.Value;
    /// <summary>The model's rows are wider than the tokenizer (151936 against 151669): the padding ids must never be allowed.</summary>
    const int LogitWidth = 151936;
    static int EndId => TokenizerTestData.Tokenizer.TokenToId("<|im_end|>")!.Value;

    public static TheoryData<string> Schemas => new()
    {
        """{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}}, "required": ["name", "age"]}""",
        """{"type": "object", "properties": {"kind": {"enum": ["cat", "dog", 3, null]}, "score": {"type": "number"}, "ok": {"type": "boolean"}, "note": {"type": ["string", "null"]}}, "required": ["kind"]}""",
        """{"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["value"]}}, "$ref": "#/$defs/node"}""",
        """{"anyOf": [{"type": "object", "properties": {"a": {"const": 1}}, "required": ["a"]}, {"type": "array", "items": {"type": "integer"}, "minItems": 2}]}""",
        """{"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "when": {"type": "string", "format": "date"}, "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}}, "required": ["id", "when", "code"]}""",
        """{"type": "object", "properties": {"point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": false, "minItems": 2}, "meta": {"type": "object", "additionalProperties": {"type": "integer"}}}, "required": ["point"]}""",
        """{"type": "object"}""",
    };

    [Theory]
    [MemberData(nameof(Schemas))]
    public void RandomTokensUnderASchemaAlwaysMakeValidJson(string schemaText)
    {
        var constraint = Vocabulary.Compile(new OutputConstraint(ConstraintKind.JsonSchema, schemaText));
        var schema = JsonSchema.FromText(schemaText);
        var random = new Random(schemaText.Length);
        int completed = 0;
        for (int walk = 0; walk < 12; walk++)
        {
            int budget = walk % 3 == 0 ? 48 : 200;
            var (text, complete) = Generate(constraint, random, budget);
            completed += complete ? 1 : 0;
            using var document = JsonDocument.Parse(text);
            var result = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
            Assert.True(result.IsValid, $"{text}\n" + string.Join("\n", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Values)));
        }
        Assert.True(completed > 0);
    }

    /// <summary>Draws random tokens under the mask until the match is complete, an end token is drawn, or the budget is spent.</summary>
    static (string Text, bool Complete) Generate(TokenConstraint constraint, Random random, int budget)
    {
        var state = new ConstraintState(constraint);
        var logits = new float[LogitWidth];
        var bytes = new List<byte>();
        for (int n = 0; n < budget && !state.IsComplete; n++)
        {
            for (int i = 0; i < logits.Length; i++) logits[i] = random.NextSingle();
            state.Apply(logits, budget - n - 1, [EndId]);
            int token = Array.IndexOf(logits, logits.Max());
            Assert.True(float.IsFinite(logits[token]), "nothing was allowed");
            Assert.True(token < Vocabulary.Count, $"padding id {token} was allowed");
            if (token == EndId) return (Decode(bytes), false);
            bytes.AddRange(Vocabulary.Spelling(token).ToArray());
            state.Advance(token);
            Assert.False(state.Violated);
        }
        return (Decode(bytes), state.IsComplete);
    }

    static string Decode(List<byte> bytes) => new UTF8Encoding(false, throwOnInvalidBytes: true).GetString([.. bytes]);

    [Fact]
    public void TheTrieWalksMaskIsEveryTokenWhoseBytesStayAlive()
    {
        var constraint = Vocabulary.Compile(new OutputConstraint(ConstraintKind.JsonSchema,
            """{"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}, "required": ["city", "n"]}"""));
        var reference = new ByteDfa(Nfa.Build(ConstraintGrammar.Compile(new OutputConstraint(ConstraintKind.JsonSchema,
            """{"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}}, "required": ["city", "n"]}"""))));
        foreach (string prefix in (string[])["", "{", "{\"ci", "{\"city\": \"Zü", "{\"city\": \"a\\", "{\"city\": \"x\", \"n\": 4"])
        {
            int state = constraint.Start;
            int referenceState = reference.Walk(reference.Start, Encoding.UTF8.GetBytes(prefix));
            foreach (byte b in Encoding.UTF8.GetBytes(prefix))
            {
                // One byte at a time through single-byte tokens, as a model could write it.
                state = constraint.Next(state, Vocabulary.Trie.Tokens.First(t => Vocabulary.Spelling(t).Length == 1 && Vocabulary.Spelling(t)[0] == b));
            }
            var mask = constraint.Mask(state);
            int allowed = 0;
            for (int id = 0; id < Vocabulary.Count; id++)
            {
                var spelling = Vocabulary.Spelling(id);
                bool expected = !spelling.IsEmpty && reference.Walk(referenceState, spelling) != ByteDfa.Dead;
                bool actual = (mask.Bits[id >> 6] >> (id & 63) & 1) == 1;
                Assert.True(expected == actual, $"after '{prefix}': token {id} '{Encoding.UTF8.GetString(spelling)}' expected {expected}");
                allowed += expected ? 1 : 0;
            }
            Assert.Equal(allowed, mask.Tokens.Length);
        }
    }

    [Fact]
    public void AChoiceAllowsOnlyItsLabels()
    {
        var constraint = Vocabulary.Compile(new OutputConstraint(ConstraintKind.Choice, """["positive", "negative", "neutral"]"""));
        var random = new Random(3);
        var seen = new HashSet<string>();
        for (int i = 0; i < 30; i++)
        {
            var (text, complete) = Generate(constraint, random, 20);
            Assert.True(complete);
            Assert.Contains(text, (string[])["positive", "negative", "neutral"]);
            seen.Add(text);
        }
        Assert.True(seen.Count > 1);
    }

    [Fact]
    public void ARegexWithinATightBudgetStillEndsAsAMatch()
    {
        var constraint = Vocabulary.Compile(new OutputConstraint(ConstraintKind.Regex, @"[a-z ]{10,200}\.\n(yes|no)"));
        var random = new Random(8);
        for (int i = 0; i < 10; i++)
        {
            var (text, complete) = Generate(constraint, random, 16);
            Assert.True(complete, text);
            Assert.Matches(@"^[a-z ]{10,200}\.\n(yes|no)$", text);
        }
    }

    [Fact]
    public void EqualConstraintsShareOneCompiledAutomaton()
    {
        var a = Vocabulary.Compile(new OutputConstraint(ConstraintKind.Regex, "[0-9]+"));
        var b = Vocabulary.Compile(new OutputConstraint(ConstraintKind.Regex, "[0-9]+"));
        Assert.Same(a, b);
    }

    [Theory]
    [InlineData("""{"type": "string", "minLength": 2, "pattern": "a+"}""", "pattern")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true}}}""", "properties.a.uniqueItems")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "number", "maximum": 3}}}""", "properties.a.maximum")]
    [InlineData("""{"not": {"type": "string"}}""", "not")]
    [InlineData("""{"type": "object", "properties": {"a": {}}, "required": ["b"]}""", "required")]
    [InlineData("""{"$ref": "#/$defs/missing"}""", "$ref")]
    [InlineData("""{"$ref": "https://example.com/s.json"}""", "$ref")]
    [InlineData("""{"type": "integer", "minimum": 5, "maximum": 1}""", "")]
    [InlineData("""{"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}, "required": ["next"]}}, "$ref": "#/$defs/n"}""", "")]
    public void AnUnsupportedSchemaIsRefusedNamingWhere(string schema, string path)
    {
        var error = Assert.Throws<GrammarException>(() => ConstraintGrammar.Compile(new OutputConstraint(ConstraintKind.JsonSchema, schema)));
        if (path.Length > 0) Assert.Equal(path, error.Path);
    }
}
