using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// Qwen3's chat template (the <c>chat_template</c> of Qwen3's tokenizer_config.json) written out in C#.
/// Renders what transformers' <c>apply_chat_template</c> renders with Python Jinja: tools, multi-turn thinking
/// removal before the last user query, <c>reasoning_content</c>, tool responses and the generation prompt.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>SHA-256 of the UTF-8 template source this class reproduces.</summary>
    public const string SupportedTemplateSha256 = "87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5";

    const string ThinkOpen = "<think>";
    const string ThinkClose = "</think>";
    const string ToolsHeader =
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    const string ToolsFooter =
        "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        + "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
        + "</tool_call><|im_end|>\n";

    ChatTemplate(bool isExact, string description)
    {
        IsExact = isExact;
        Description = description;
    }

    public static ChatTemplate Qwen3 { get; } = new(isExact: true, "Qwen3's chat template");

    /// <summary>Whether the checkpoint's chat_template is the one this class reproduces exactly.</summary>
    public bool IsExact { get; }

    /// <summary>What is rendered for the checkpoint, in words a log line can show.</summary>
    public string Description { get; }

    public static bool IsSupported(string? templateSource) =>
        templateSource is not null && Sha256(templateSource) == SupportedTemplateSha256;

    public static ChatTemplate For(Qwen3Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return For(tokenizer.ChatTemplateSource);
    }

    /// <summary>
    /// The renderer for a checkpoint's <c>chat_template</c>: Qwen3's, exactly, when it is the original Qwen3 template.
    /// A ChatML template that differs (the 2507 releases, fine-tunes), or none at all, is rendered as Qwen3's ChatML
    /// and flagged (<see cref="IsExact"/> false) so callers can say so. Any other template is refused: rendering it
    /// as ChatML would feed the model a format it was not trained on.
    /// </summary>
    public static ChatTemplate For(string? templateSource)
    {
        if (IsSupported(templateSource)) return Qwen3;

        if (templateSource is null)
        {
            return new ChatTemplate(isExact: false, "Qwen3's ChatML template (tokenizer_config.json has no chat_template)");
        }

        if (templateSource.Contains("<|im_start|>", StringComparison.Ordinal))
        {
            return new ChatTemplate(isExact: false,
                $"Qwen3's ChatML template, not the checkpoint's own chat_template (sha256 {Sha256(templateSource)[..12]}), which it may not match exactly");
        }

        throw new TokenizerFormatException("tokenizer_config.json", "chat_template",
            "is not a ChatML template: only Qwen3's chat template is rendered here; send prompts as text or token ids");
    }

    static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    /// <param name="enableThinking">false appends an empty think block to the generation prompt; null leaves it undefined.</param>
    /// <param name="tools">Tool definitions (usually <c>{"type": "function", "function": {...}}</c>); empty or null means none.</param>
    public string Render(
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt = false,
        bool? enableThinking = null,
        IReadOnlyList<JsonElement>? tools = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var sb = new StringBuilder();
        bool firstIsSystem = messages.Count > 0 && messages[0].Role == "system";
        if (tools is { Count: > 0 })
        {
            sb.Append("<|im_start|>system\n");
            if (firstIsSystem) sb.Append(messages[0].Content).Append("\n\n");

            sb.Append(ToolsHeader);
            foreach (JsonElement tool in tools) sb.Append('\n').Append(PythonJson.Serialize(tool));

            sb.Append(ToolsFooter);
        }
        else if (firstIsSystem)
        {
            sb.Append("<|im_start|>system\n").Append(messages[0].Content).Append("<|im_end|>\n");
        }

        int lastQuery = LastQueryIndex(messages);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i];
            string content = message.Content ?? "";
            switch (message.Role)
            {
                case "user":
                case "system" when i > 0:
                    sb.Append("<|im_start|>").Append(message.Role).Append('\n').Append(content).Append("<|im_end|>\n");
                    break;
                case "assistant":
                    AppendAssistant(sb, message, content, afterLastQuery: i > lastQuery, isLast: i == messages.Count - 1);
                    break;
                case "tool":
                    if (i == 0 || messages[i - 1].Role != "tool") sb.Append("<|im_start|>user");

                    sb.Append("\n<tool_response>\n").Append(content).Append("\n</tool_response>");
                    if (i == messages.Count - 1 || messages[i + 1].Role != "tool") sb.Append("<|im_end|>\n");

                    break;
            }
        }

        if (addGenerationPrompt)
        {
            sb.Append("<|im_start|>assistant\n");
            if (enableThinking == false) sb.Append("<think>\n\n</think>\n\n");
        }

        return sb.ToString();
    }

    // The last user turn that is a real query rather than tool output relayed as a user message.
    static int LastQueryIndex(IReadOnlyList<ChatMessage> messages)
    {
        for (int i = messages.Count - 1; i >= 0; i--)
        {
            string content = messages[i].Content ?? "";
            bool relayedToolOutput = content.StartsWith("<tool_response>", StringComparison.Ordinal)
                && content.EndsWith("</tool_response>", StringComparison.Ordinal);
            if (messages[i].Role == "user" && !relayedToolOutput) return i;
        }

        return messages.Count - 1;
    }

    static void AppendAssistant(StringBuilder sb, ChatMessage message, string content, bool afterLastQuery, bool isLast)
    {
        string reasoning = "";
        if (message.ReasoningContent is not null)
        {
            reasoning = message.ReasoningContent;
        }
        else if (content.Contains(ThinkClose, StringComparison.Ordinal))
        {
            string beforeClose = content[..content.IndexOf(ThinkClose, StringComparison.Ordinal)].TrimEnd('\n');
            int open = beforeClose.LastIndexOf(ThinkOpen, StringComparison.Ordinal);
            reasoning = (open < 0 ? beforeClose : beforeClose[(open + ThinkOpen.Length)..]).TrimStart('\n');
            content = content[(content.LastIndexOf(ThinkClose, StringComparison.Ordinal) + ThinkClose.Length)..].TrimStart('\n');
        }

        sb.Append("<|im_start|>").Append(message.Role);
        if (afterLastQuery && (isLast || reasoning.Length > 0))
        {
            sb.Append("\n<think>\n").Append(reasoning.Trim('\n')).Append("\n</think>\n\n").Append(content.TrimStart('\n'));
        }
        else
        {
            sb.Append('\n').Append(content);
        }

        if (message.ToolCalls is { } calls)
        {
            for (int j = 0; j < calls.Count; j++)
            {
                if (j > 0 || content.Length > 0) sb.Append('\n');

                ChatToolCall call = calls[j];
                sb.Append("<tool_call>\n{\"name\": \"").Append(call.Name).Append("\", \"arguments\": ");
                sb.Append(call.Arguments.ValueKind == JsonValueKind.String
                    ? call.Arguments.GetString()
                    : PythonJson.Serialize(call.Arguments));
                sb.Append("}\n</tool_call>");
            }
        }

        sb.Append("<|im_end|>\n");
    }
}
