namespace Qwen3Cluster.Model.Constraints;

/// <summary>What kind of language an <see cref="OutputConstraint"/> holds the output to.</summary>
public enum ConstraintKind
{
    /// <summary><see cref="OutputConstraint.Source"/> is a JSON Schema (OpenAI's <c>response_format</c> json_schema; json_object is <c>{"type": "object"}</c>).</summary>
    JsonSchema,
    /// <summary>A regex the whole output matches (vLLM's <c>guided_regex</c>).</summary>
    Regex,
    /// <summary>A JSON array of strings, one of which is the whole output (vLLM's <c>guided_choice</c>).</summary>
    Choice,
    /// <summary>
    /// Qwen3's Hermes tool calls after the forced opening <c>&lt;tool_call&gt;\n{"name": "</c> (or, for one named function,
    /// after its <c>"arguments": </c>): a JSON object <c>{"mode": "required"|"named", "tools": [{"name", "parameters"}]}</c>.
    /// </summary>
    ToolCalls,
}

/// <summary>
/// A request's constraint on its output, as it travels with the request from the edge that checked it to the replica
/// that enforces it: plain text, compared by value, so equal constraints share one compiled automaton.
/// </summary>
public sealed record OutputConstraint(ConstraintKind Kind, string Source);
