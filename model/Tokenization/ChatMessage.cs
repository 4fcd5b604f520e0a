using System.Text.Json;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>One chat turn as the Qwen3 chat template reads it.</summary>
/// <param name="Role">"system", "user", "assistant" or "tool"; other roles are not rendered, as in the template.</param>
/// <param name="Content">The text; null renders as empty (the Jinja template itself would fail on it).</param>
/// <param name="ReasoningContent">An assistant's thinking; when null it is taken from a <c>&lt;think&gt;…&lt;/think&gt;</c> prefix of the content.</param>
/// <param name="ToolCalls">Calls made by an assistant turn.</param>
public sealed record ChatMessage(
    string Role,
    string? Content,
    string? ReasoningContent = null,
    IReadOnlyList<ChatToolCall>? ToolCalls = null)
{
    public static ChatMessage System(string content) => new("system", content);

    public static ChatMessage User(string content) => new("user", content);

    public static ChatMessage Assistant(string content, string? reasoningContent = null, IReadOnlyList<ChatToolCall>? toolCalls = null) =>
        new("assistant", content, reasoningContent, toolCalls);
}

/// <summary>A function call of an assistant turn.</summary>
/// <param name="Arguments">A JSON string is written verbatim (OpenAI sends arguments as a string); anything else is written as JSON.</param>
public sealed record ChatToolCall(string Name, JsonElement Arguments)
{
    /// <summary>A call whose arguments are an already serialized JSON text, written verbatim.</summary>
    public static ChatToolCall WithArgumentsText(string name, string argumentsJson) =>
        new(name, JsonSerializer.SerializeToElement(argumentsJson));
}
