using System.Text.Json;
using Qwen3Cluster.Model.Tokenization;
using static Qwen3Cluster.Tests.Tokenization.TokenizerTestData;

namespace Qwen3Cluster.Tests.Tokenization;

public sealed class ChatTemplateTests
{
    static readonly ChatTemplate Template = ChatTemplate.Qwen3;

    [Fact]
    public void RenderMatchesReferenceForEveryFixtureConversation()
    {
        var failures = new List<string>();
        var cases = ChatCases.ToList();
        foreach (JsonElement c in cases)
        {
            string expected = c.GetProperty("text").GetString()!;
            string actual = Render(c);
            if (actual != expected)
            {
                failures.Add($"{c.GetProperty("name").GetString()}:\n  expected {Show(expected)}\n  actual   {Show(actual)}");
            }
        }

        AssertNoFailures(failures, cases.Count, ChatCaseCount);
    }

    [Fact]
    public void RenderedConversationsEncodeToReferenceIds()
    {
        var failures = new List<string>();
        var cases = ChatCases.ToList();
        foreach (JsonElement c in cases)
        {
            int[] expected = Ints(c.GetProperty("ids"));
            int[] actual = Tokenizer.Encode(Render(c));
            if (!actual.SequenceEqual(expected))
            {
                failures.Add($"{c.GetProperty("name").GetString()}:\n  expected {Show(expected)}\n  actual   {Show(actual)}");
            }
        }

        AssertNoFailures(failures, cases.Count, ChatCaseCount);
    }

    [Fact]
    public void TokenizerTemplateIsTheOneThisRendererReproduces()
    {
        Assert.Same(ChatTemplate.Qwen3, ChatTemplate.For(Tokenizer));
        Assert.False(ChatTemplate.IsSupported(Tokenizer.ChatTemplateSource + "\n"));
        Assert.False(ChatTemplate.IsSupported(null));
    }

    [Fact]
    public void ADifferentChatMlTemplateIsRenderedAsQwen3sAndFlagged()
    {
        const string chatMl = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
        using var files = new MiniTokenizerFiles(mutateConfig: c => c["chat_template"] = chatMl);
        var template = ChatTemplate.For(Qwen3Tokenizer.Load(files.Directory));
        Assert.False(ChatTemplate.IsSupported(chatMl));
        Assert.False(template.IsExact);
        Assert.Contains("not the checkpoint's own chat_template", template.Description);
        ChatMessage[] messages = [ChatMessage.User("Hi")];
        Assert.Equal(ChatTemplate.Qwen3.Render(messages, addGenerationPrompt: true), template.Render(messages, addGenerationPrompt: true));

        using var none = new MiniTokenizerFiles(mutateConfig: c => c.Remove("chat_template"));
        var fallback = ChatTemplate.For(Qwen3Tokenizer.Load(none.Directory));
        Assert.False(fallback.IsExact);
        Assert.Contains("no chat_template", fallback.Description);
    }

    [Fact]
    public void ATemplateThatIsNotChatMlIsRefusedNamingTheField()
    {
        using var files = new MiniTokenizerFiles();
        var tokenizer = Qwen3Tokenizer.Load(files.Directory);
        var error = Assert.Throws<TokenizerFormatException>(() => ChatTemplate.For(tokenizer));
        Assert.Equal(("tokenizer_config.json", "chat_template"), (error.File, error.Field));
    }

    [Fact]
    public void GenerationPromptHonoursEnableThinking()
    {
        ChatMessage[] messages = [ChatMessage.User("Hi")];
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", Template.Render(messages, addGenerationPrompt: true));
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", Template.Render(messages, true, enableThinking: true));
        Assert.Equal(
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            Template.Render(messages, true, enableThinking: false));
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", Template.Render(messages, addGenerationPrompt: false, enableThinking: false));
    }

    [Fact]
    public void ThinkingIsStrippedOfNewlinesOnlyLikePythonJinja()
    {
        // Python's str.strip('\n') keeps spaces. @huggingface/jinja 0.5.11 ignores strip()'s argument and trims all
        // whitespace, so this case is not in the node-recorded fixtures; the expectation comes from Jinja2 3.1.6
        // configured as transformers configures it.
        ChatMessage[] messages = [ChatMessage.User("hi"), ChatMessage.Assistant("<think>\n  r \n</think>\n\n  Hello  \n")];
        Assert.Equal(
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n  r \n</think>\n\n  Hello  \n<|im_end|>\n",
            Template.Render(messages));
    }

    [Fact]
    public void ToolJsonIsFormattedLikePythonJsonDumps()
    {
        // Expected output from Jinja2 3.1.6 with transformers' tojson (json.dumps, ensure_ascii=False). The node
        // reference differs here: JavaScript prints 1.0 as 1, 1e16 in full and moves integer-like keys first.
        JsonElement arguments = JsonDocument.Parse(
            "{\"x\": 1.0, \"y\": 1e-5, \"z\": 1e16, \"big\": 12345678901234567890, \"neg\": -0.0, \"k\": \"\\u2028</script>\\u0007\", \"2\": \"b\", \"1\": \"a\"}")
            .RootElement;
        JsonElement tool = JsonDocument.Parse(
            "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"2\": {\"default\": 0.1}, \"1\": {\"default\": 100.0}}}}")
            .RootElement;
        ChatMessage[] messages = [ChatMessage.User("go"), ChatMessage.Assistant("", toolCalls: [new ChatToolCall("f", arguments)])];

        string expected =
            "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            + "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"2\": {\"default\": 0.1}, \"1\": {\"default\": 100.0}}}}\n"
            + "</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
            + "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>\n"
            + "{\"name\": \"f\", \"arguments\": {\"x\": 1.0, \"y\": 1e-05, \"z\": 1e+16, \"big\": 12345678901234567890, \"neg\": -0.0, "
            + "\"k\": \"\u2028</script>\\u0007\", \"2\": \"b\", \"1\": \"a\"}}\n</tool_call><|im_end|>\n";
        Assert.Equal(expected, Template.Render(messages, tools: [tool]));
    }

    [Fact]
    public void StringToolArgumentsAreWrittenVerbatim()
    {
        ChatMessage[] messages =
        [
            ChatMessage.User("q"),
            ChatMessage.Assistant("ok", toolCalls: [ChatToolCall.WithArgumentsText("search", "{\"query\":\"x\" }")]),
        ];
        Assert.EndsWith(
            "ok\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\":\"x\" }}\n</tool_call><|im_end|>\n",
            Template.Render(messages));
    }

    [Theory]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(1.5e-05, "1.5e-05")]
    [InlineData(0.1, "0.1")]
    [InlineData(1.0, "1.0")]
    [InlineData(-0.0, "-0.0")]
    [InlineData(0.0, "0.0")]
    [InlineData(123456789012345678.0, "1.2345678901234568e+17")]
    [InlineData(1e22, "1e+22")]
    [InlineData(1.7976931348623157e308, "1.7976931348623157e+308")]
    [InlineData(5e-324, "5e-324")]
    [InlineData(123.456, "123.456")]
    [InlineData(-3.0e-7, "-3e-07")]
    [InlineData(100.0, "100.0")]
    public void FloatsAreWrittenAsPythonRepr(double value, string python)
    {
        Assert.Equal(python, PythonJson.FloatRepr(value));
    }

    [Fact]
    public void EmptyConversationRendersOnlyTheGenerationPrompt()
    {
        Assert.Equal("", Template.Render([]));
        Assert.Equal("<|im_start|>assistant\n", Template.Render([], addGenerationPrompt: true));
    }

    static string Render(JsonElement c)
    {
        var messages = c.GetProperty("messages").EnumerateArray().Select(ParseMessage).ToList();
        bool addGenerationPrompt = c.GetProperty("add_generation_prompt").GetBoolean();
        bool? enableThinking = c.TryGetProperty("enable_thinking", out JsonElement thinking) ? thinking.GetBoolean() : null;
        List<JsonElement>? tools = c.TryGetProperty("tools", out JsonElement t) ? t.EnumerateArray().ToList() : null;
        return Template.Render(messages, addGenerationPrompt, enableThinking, tools);
    }

    static ChatMessage ParseMessage(JsonElement m)
    {
        string? Text(string name) =>
            m.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

        List<ChatToolCall>? calls = null;
        if (m.TryGetProperty("tool_calls", out JsonElement toolCalls))
        {
            calls = toolCalls.EnumerateArray().Select(call =>
            {
                JsonElement function = call.TryGetProperty("function", out JsonElement f) ? f : call;
                return new ChatToolCall(function.GetProperty("name").GetString()!, function.GetProperty("arguments"));
            }).ToList();
        }

        return new ChatMessage(m.GetProperty("role").GetString()!, Text("content"), Text("reasoning_content"), calls);
    }
}
