using System.ClientModel;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using OpenAI;
using OpenAI.Chat;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>The official OpenAI .NET SDK (and plain HTTP for /v1/completions) against a real server process.</summary>
[Collection(ServerCollection.Name)]
public sealed class OpenAiClientTests(ServerFixture fixture)
{
    ChatClient Chat(string key = ServerFixture.KeyA) =>
        new(Path.GetFileName(fixture.Model), new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri($"{fixture.Server.HttpAddress}/v1") });

    static ChatCompletionOptions Greedy(int maxTokens) => new() { Temperature = 0, MaxOutputTokenCount = maxTokens };

    [Fact]
    public async Task ChatCompletionEqualsQwen3GenerateWithLogprobsAndUsage()
    {
        const string question = "Name three prime numbers.";
        string output = await Processes.RunQwen3Async("generate", "--model", fixture.Model, "--prompt", question, "--chat",
            "--temperature", "0", "--max-tokens", "12", "--json");
        using var expected = JsonDocument.Parse(output);

        var options = Greedy(12);
        options.IncludeLogProbabilities = true;
        options.TopLogProbabilityCount = 3;
        ChatCompletion completion = await Chat().CompleteChatAsync([new UserChatMessage(question)], options);

        Assert.Equal(expected.RootElement.GetProperty("text").GetString(), completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(expected.RootElement.GetProperty("prompt_ids").GetArrayLength(), completion.Usage.InputTokenCount);
        Assert.Equal(12, completion.Usage.OutputTokenCount);
        Assert.Equal(12, completion.ContentTokenLogProbabilities.Count);
        var tokens = expected.RootElement.GetProperty("tokens").EnumerateArray().ToArray();
        for (int i = 0; i < 12; i++)
        {
            var lp = completion.ContentTokenLogProbabilities[i];
            Assert.InRange(lp.LogProbability - tokens[i].GetProperty("logprob").GetSingle(), -1e-4f, 1e-4f);
            Assert.Equal(3, lp.TopLogProbabilities.Count);
            Assert.Equal(lp.LogProbability, lp.TopLogProbabilities[0].LogProbability, 5);
        }
    }

    [Fact]
    public async Task StreamingDeltasAddUpToTheWholeAnswerAndEndWithUsage()
    {
        var messages = new ChatMessage[] { new SystemChatMessage("You are terse."), new UserChatMessage("Count to five.") };
        var whole = await Chat().CompleteChatAsync(messages, Greedy(16));
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in Chat().CompleteChatStreamingAsync(messages, Greedy(16)))
        {
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            usage = update.Usage ?? usage;
            finish = update.FinishReason ?? finish;
        }
        Assert.Equal(whole.Value.Content[0].Text, text.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(16, usage!.OutputTokenCount);
    }

    [Fact]
    public async Task AStopSequenceEndsTheAnswerBeforeIt()
    {
        var messages = new ChatMessage[] { new UserChatMessage("Write a sentence about rivers.") };
        string full = (await Chat().CompleteChatAsync(messages, Greedy(24))).Value.Content[0].Text;
        int cut = full.Length / 2;
        string stop = full.Substring(cut, Math.Min(3, full.Length - cut));
        var options = Greedy(24);
        options.StopSequences.Add(stop);
        var stopped = (await Chat().CompleteChatAsync(messages, options)).Value;
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.Content[0].Text);
    }

    [Fact]
    public async Task TheSameSeedSamplesTheSameAnswer()
    {
        var messages = new ChatMessage[] { new UserChatMessage("Tell me a story.") };
        async Task<string> Sample(long seed)
        {
            var options = new ChatCompletionOptions { Temperature = 1.0f, MaxOutputTokenCount = 16 };
            options.Seed = seed;
            return (await Chat().CompleteChatAsync(messages, options)).Value.Content[0].Text;
        }
        string first = await Sample(42);
        Assert.Equal(first, await Sample(42));
        Assert.NotEqual(first, await Sample(7));
    }

    [Fact]
    public async Task AConversationResentInFullReusesItsCache()
    {
        string system = string.Join(' ', Enumerable.Repeat("You are a careful assistant who answers in plain words.", 8));
        var conversation = new List<ChatMessage> { new SystemChatMessage(system), new UserChatMessage("What is a silo?") };
        var first = (await Chat().CompleteChatAsync(conversation, Greedy(10))).Value;
        conversation.Add(new AssistantChatMessage(first.Content[0].Text));
        conversation.Add(new UserChatMessage("And a grain?"));
        var second = (await Chat().CompleteChatAsync(conversation, Greedy(10))).Value;
        int cached = second.Usage.InputTokenDetails.CachedTokenCount;

        // The exact count: the first turn left its prompt and all but its last reply token in full 16-token blocks,
        // findable by hash; the second prompt reuses the leading blocks it shares with them, and always computes its
        // last token.
        using var channel = fixture.Channel();
        var grpc = new Inference.InferenceClient(channel);
        async Task<int[]> Ids(params (string Role, string Content)[] messages)
        {
            var request = new TokenizeRequest();
            request.Messages.AddRange(messages.Select(m => new Message { Role = m.Role, Content = m.Content }));
            return [.. (await grpc.TokenizeAsync(request)).Ids];
        }
        int[] firstPrompt = await Ids(("system", system), ("user", "What is a silo?"));
        int[] secondPrompt = await Ids(("system", system), ("user", "What is a silo?"), ("assistant", first.Content[0].Text), ("user", "And a grain?"));
        Assert.Equal((first.Usage.InputTokenCount, second.Usage.InputTokenCount), (firstPrompt.Length, secondPrompt.Length));
        var generate = new GenerateRequest { TokenIds = new TokenIds(), Sampling = new Protos.V1.SamplingParams { Temperature = 0, MaxTokens = 10 } };
        generate.TokenIds.Ids.AddRange(firstPrompt);
        var reply = new List<int>();
        await foreach (var r in grpc.Generate(generate).ResponseStream.ReadAllAsync()) reply.AddRange(r.Tokens.Select(t => t.Id));
        int[] computed = [.. firstPrompt, .. reply[..^1]];
        int blocks = 0;
        while ((blocks + 1) * 16 <= Math.Min(computed.Length, secondPrompt.Length - 1)
            && computed.AsSpan(blocks * 16, 16).SequenceEqual(secondPrompt.AsSpan(blocks * 16, 16)))
        {
            blocks++;
        }

        Assert.True(blocks >= firstPrompt.Length / 16, "the second prompt begins with the first");
        Assert.Equal(blocks * 16, cached);
    }

    [Fact]
    public async Task ModelsAndLegacyCompletionsWork()
    {
        using var http = new HttpClient { BaseAddress = new Uri(fixture.Server.HttpAddress) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ServerFixture.KeyA);
        using var models = JsonDocument.Parse(await http.GetStringAsync("/v1/models"));
        Assert.Equal(Path.GetFileName(fixture.Model), models.RootElement.GetProperty("data")[0].GetProperty("id").GetString());

        var body = new StringContent("""{"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "logprobs": 2}""", Encoding.UTF8, "application/json");
        using var response = await http.PostAsync("/v1/completions", body);
        response.EnsureSuccessStatusCode();
        using var completion = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var choice = completion.RootElement.GetProperty("choices")[0];
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(6, choice.GetProperty("logprobs").GetProperty("tokens").GetArrayLength());
        Assert.Equal(string.Concat(choice.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString())),
            choice.GetProperty("text").GetString());

        var stream = new StringContent("""{"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "stream": true}""", Encoding.UTF8, "application/json");
        using var streamed = await http.PostAsync("/v1/completions", stream);
        string events = await streamed.Content.ReadAsStringAsync();
        Assert.EndsWith("data: [DONE]\n\n", events);
        string text = string.Concat(events.Split("\n\n").Where(e => e.StartsWith("data: {"))
            .Select(e => JsonDocument.Parse(e[6..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(choice.GetProperty("text").GetString(), text);
    }

    [Fact]
    public async Task ToolsAndToolResultsAreAcceptedAndBadToolsRefusedByField()
    {
        var weather = ChatTool.CreateFunctionTool("get_weather", "The weather in a city",
            BinaryData.FromString("""{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"""));
        var options = Greedy(6);
        options.Tools.Add(weather);
        List<ChatMessage> conversation =
        [
            new UserChatMessage("What is the weather in Bern?"),
            new AssistantChatMessage([ChatToolCall.CreateFunctionToolCall("call_1", "get_weather", BinaryData.FromString("""{"city": "Bern"}"""))]),
            new ToolChatMessage("call_1", """{"temperature": 3}"""),
        ];
        ChatCompletion answer = await Chat().CompleteChatAsync(conversation, options);
        Assert.Equal(6, answer.Usage.OutputTokenCount);
        // The tools are in the prompt: the same conversation without them is shorter.
        ChatCompletion plain = await Chat().CompleteChatAsync(conversation, Greedy(6));
        Assert.True(answer.Usage.InputTokenCount > plain.Usage.InputTokenCount + 40);

        // Streamed with tool_choice none: plain content deltas.
        options.ToolChoice = ChatToolChoice.CreateNoneChoice();
        int deltas = 0;
        await foreach (var update in Chat().CompleteChatStreamingAsync(conversation, options))
        {
            Assert.Empty(update.ToolCallUpdates);
            deltas += update.ContentUpdate.Count;
        }
        Assert.True(deltas > 0);

        var bad = Greedy(2);
        bad.Tools.Add(ChatTool.CreateFunctionTool("no spaces allowed", "x"));
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Chat().CompleteChatAsync([new UserChatMessage("hi")], bad));
        Assert.Equal(400, refused.Status);
        Assert.Contains("tools[0].function.name", refused.Message);
    }

    [Fact]
    public async Task ThinkingCanBeSwitchedOffLikeVllm()
    {
        using var http = new HttpClient { BaseAddress = new Uri(fixture.Server.HttpAddress) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ServerFixture.KeyA);
        async Task<int> PromptTokens(string extra)
        {
            var body = new StringContent($$"""{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1{{extra}}}""", Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/v1/chat/completions", body);
            response.EnsureSuccessStatusCode();
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        }
        // enable_thinking false appends "<think>\n\n</think>\n\n" (4 tokens) to the generation prompt.
        Assert.Equal(await PromptTokens("") + 4, await PromptTokens(""", "chat_template_kwargs": {"enable_thinking": false}"""));
    }
}
