namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// Token ids of a conversation turn. A fresh conversation is rendered whole; a session's next turn is its
/// history (every earlier prompt and reply, exactly as the model saw them) followed by the new messages rendered
/// the way the template would continue it, so the history's KV cache stays valid.
/// </summary>
public static class ChatPrompt
{
    const string ImEnd = "<|im_end|>";

    public static int[] Render(Qwen3Tokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool? enableThinking,
        IReadOnlyList<System.Text.Json.JsonElement>? tools = null, string forcedPrefix = "") =>
        tokenizer.Encode(ChatTemplate.For(tokenizer).Render(messages, addGenerationPrompt: true, enableThinking, tools) + forcedPrefix);

    /// <param name="tools">Rendered only into a session's first turn (the template puts them in the system turn, which stays in the history).</param>
    /// <param name="forcedPrefix">What the assistant's reply is made to begin with (a forced tool call's opening).</param>
    public static int[] Continue(Qwen3Tokenizer tokenizer, IReadOnlyList<int> history, IReadOnlyList<ChatMessage> messages, bool? enableThinking,
        IReadOnlyList<System.Text.Json.JsonElement>? tools = null, string forcedPrefix = "")
    {
        if (history.Count == 0) return Render(tokenizer, messages, enableThinking, tools, forcedPrefix);
        string rendered = ChatTemplate.For(tokenizer).Render(messages, addGenerationPrompt: true, enableThinking);
        // The template closes every turn with "<|im_end|>\n"; a reply that ended on <|im_end|> lacks only the
        // newline, one cut short (max tokens, another stop) lacks both.
        bool closed = tokenizer.TokenToId(ImEnd) is int imEnd && history[^1] == imEnd;
        return [.. history, .. tokenizer.Encode((closed ? "\n" : ImEnd + "\n") + rendered + forcedPrefix)];
    }
}
