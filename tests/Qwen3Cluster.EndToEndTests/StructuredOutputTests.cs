using System.ClientModel;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Json.Schema;
using OpenAI;
using Grpc.Core;
using OpenAI.Chat;
using Proto = Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>
/// Constrained decoding against a real server on a random-weights checkpoint, the adversarial case (it never
/// "wants" to write JSON): every reply held to a JSON Schema validates, every forced tool call parses and its
/// arguments validate, streamed and not, read by the official OpenAI .NET SDK and checked by JsonSchema.Net.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class StructuredOutputTests(ServerFixture fixture)
{
    ChatClient Chat() =>
        new(Path.GetFileName(fixture.Model), new ApiKeyCredential(ServerFixture.KeyA), new OpenAIClientOptions { Endpoint = new Uri($"{fixture.Server.HttpAddress}/v1") });

    static readonly string[] Schemas =
    [
        """{"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0, "maximum": 120}, "email": {"type": ["string", "null"]}}, "required": ["name", "age"], "additionalProperties": false}""",
        """{"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1, "maxItems": 3}, "total": {"type": "number"}}, "required": ["items", "total"], "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}[0-9]{2}$"}, "qty": {"type": "integer", "minimum": 1}}, "required": ["sku", "qty"]}}}""",
        """{"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative", "neutral"]}, "confidence": {"type": "number", "minimum": 0}, "reasons": {"type": "array", "items": {"type": "string"}}, "flagged": {"type": "boolean"}}, "required": ["sentiment", "flagged"]}""",
    ];

    static readonly (string Name, string Parameters)[] Tools =
    [
        ("get_weather", """{"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}"""),
        ("search", """{"type": "object", "properties": {"query": {"type": "string", "minLength": 1}, "limit": {"type": "integer", "minimum": 1, "maximum": 10}}, "required": ["query", "limit"]}"""),
    ];

    static string Errors(EvaluationResults result) =>
        string.Join("; ", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")));

    static void AssertValid(string schemaText, string json, string what)
    {
        using var document = JsonDocument.Parse(json);
        var result = JsonSchema.FromText(schemaText).Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"{what}: {json}\n{Errors(result)}");
    }

    /// <summary>Runs <paramref name="count"/> requests, eight at a time.</summary>
    static async Task Many(int count, Func<int, Task> request)
    {
        using var gate = new SemaphoreSlim(8);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                await request(i);
            }
            finally
            {
                gate.Release();
            }
        }));
    }

    [Fact]
    public async Task FiftyRepliesHeldToAJsonSchemaAllValidateStreamedAndNot()
    {
        int streamedStops = 0, wholeStops = 0;
        await Many(50, async i =>
        {
            string schema = Schemas[i % Schemas.Length];
            var options = new ChatCompletionOptions
            {
                Temperature = 1.0f,
                Seed = i,
                MaxOutputTokenCount = 96,
                ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat($"schema_{i % Schemas.Length}", BinaryData.FromString(schema), jsonSchemaIsStrict: true),
            };
            ChatMessage[] messages = [new UserChatMessage($"Describe record {i} as JSON.")];
            string text;
            ChatFinishReason? finish;
            if (i % 2 == 0)
            {
                ChatCompletion completion = await Chat().CompleteChatAsync(messages, options);
                text = completion.Content[0].Text;
                finish = completion.FinishReason;
                if (finish == ChatFinishReason.Stop) Interlocked.Increment(ref wholeStops);
            }
            else
            {
                var builder = new StringBuilder();
                finish = null;
                await foreach (var update in Chat().CompleteChatStreamingAsync(messages, options))
                {
                    foreach (var part in update.ContentUpdate) builder.Append(part.Text);
                    finish = update.FinishReason ?? finish;
                }
                text = builder.ToString();
                if (finish == ChatFinishReason.Stop) Interlocked.Increment(ref streamedStops);
            }
            AssertValid(schema, text, $"request {i} ({finish})");
        });
        // The budget steers a reply to a complete match before max_tokens: they end as complete JSON, mostly by the grammar's own end.
        Assert.True(streamedStops + wholeStops >= 40, $"{streamedStops + wholeStops} of 50 stopped at the end of the JSON");
    }

    [Fact]
    public async Task FiftyForcedToolCallsAllParseAndTheirArgumentsValidateStreamedAndNot()
    {
        await Many(50, async i =>
        {
            var options = new ChatCompletionOptions { Temperature = 1.0f, Seed = 100 + i, MaxOutputTokenCount = 96 };
            foreach (var (name, parameters) in Tools) options.Tools.Add(ChatTool.CreateFunctionTool(name, $"The {name} tool", BinaryData.FromString(parameters)));
            // Every fifth names its function; the others only require some call.
            string? named = i % 5 == 4 ? "search" : null;
            options.ToolChoice = named is null ? ChatToolChoice.CreateRequiredChoice() : ChatToolChoice.CreateFunctionChoice(named);
            ChatMessage[] messages = [new UserChatMessage($"Help with task {i}.")];
            var calls = new List<(string Name, string Arguments)>();
            ChatFinishReason? finish;
            if (i % 2 == 0)
            {
                ChatCompletion completion = await Chat().CompleteChatAsync(messages, options);
                finish = completion.FinishReason;
                calls.AddRange(completion.ToolCalls.Select(c => (c.FunctionName, c.FunctionArguments.ToString())));
                Assert.All(completion.ToolCalls, c => Assert.StartsWith("call_", c.Id));
            }
            else
            {
                var names = new SortedDictionary<int, string>();
                var arguments = new SortedDictionary<int, StringBuilder>();
                finish = null;
                await foreach (var update in Chat().CompleteChatStreamingAsync(messages, options))
                {
                    string delta = string.Concat(update.ContentUpdate.Select(p => p.Text));
                    if (delta.Contains("<tool_call>"))
                    {
                        ChatCompletion again = await Chat().CompleteChatAsync(messages, options);
                        Assert.Fail($"request {i}: a tag in content: {delta}; whole: {again.Content.FirstOrDefault()?.Text} calls {string.Join(" | ", again.ToolCalls.Select(c => c.FunctionName + c.FunctionArguments))}");
                    }
                    foreach (var call in update.ToolCallUpdates)
                    {
                        if (call.FunctionName is { } n) names[call.Index] = n;
                        if (!arguments.TryGetValue(call.Index, out var b)) arguments[call.Index] = b = new StringBuilder();
                        if (call.FunctionArgumentsUpdate is { } a) b.Append(a.ToString());
                    }
                    finish = update.FinishReason ?? finish;
                }
                calls.AddRange(names.Select(n => (n.Value, arguments[n.Key].ToString())));
            }
            Assert.True(calls.Count > 0, $"request {i}: no tool call ({finish})");
            Assert.Equal(ChatFinishReason.ToolCalls, finish);
            foreach (var (name, args) in calls)
            {
                if (named is not null) Assert.Equal(named, name);
                var tool = Assert.Single(Tools, t => t.Name == name);
                AssertValid(tool.Parameters, args, $"request {i} call {name}");
            }
        });
    }

    async Task<JsonElement> Post(string body)
    {
        using var http = new HttpClient { BaseAddress = new Uri(fixture.Server.HttpAddress) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ServerFixture.KeyA);
        using var response = await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Fact]
    public async Task AGuidedChoiceAnswersOnlyWithOneOfItsLabelsAndAGuidedRegexMatches()
    {
        string[] labels = ["positive", "negative", "neutral"];
        var seen = new HashSet<string>();
        for (int i = 0; i < 10; i++)
        {
            var reply = await Post($$"""{"messages": [{"role": "user", "content": "Classify review {{i}}."}], "temperature": 1.0, "seed": {{i}}, "guided_choice": ["positive", "negative", "neutral"]}""");
            var choice = reply.GetProperty("choices")[0];
            string content = choice.GetProperty("message").GetProperty("content").GetString()!;
            Assert.Contains(content, labels);
            Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
            seen.Add(content);
        }
        Assert.True(seen.Count > 1, "random weights should not always pick the same label");

        var dated = await Post("""{"messages": [{"role": "user", "content": "When?"}], "temperature": 1.0, "seed": 3, "max_tokens": 40, "guided_regex": "[0-9]{4}-[0-9]{2}-[0-9]{2} (AM|PM)"}""");
        Assert.Matches(@"^[0-9]{4}-[0-9]{2}-[0-9]{2} (AM|PM)$", dated.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task AnUnsupportedSchemaIsRefusedNamingTheKeyword()
    {
        var options = new ChatCompletionOptions
        {
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("bad", BinaryData.FromString(
                """{"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": true}}}""")),
        };
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Chat().CompleteChatAsync([new UserChatMessage("hi")], options));
        Assert.Equal(400, refused.Status);
        Assert.Contains("response_format.json_schema.schema.properties.tags.uniqueItems", refused.Message);

        var both = await Post("""{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}, "guided_regex": "a+"}""");
        Assert.Equal("guided_regex", both.GetProperty("error").GetProperty("param").GetString());
        var regex = await Post("""{"messages": [{"role": "user", "content": "hi"}], "guided_regex": "(a)\\1"}""");
        Assert.Equal("guided_regex", regex.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task OverGrpcGenerateChatAndASessionTurnAreHeldToTheirConstraint()
    {
        using var channel = fixture.Channel();
        var inference = new Proto.Inference.InferenceClient(channel);
        var sampling = new Proto.SamplingParams { Temperature = 1.0f, Seed = 9, MaxTokens = 64 };

        async Task<(string Text, string Finish)> Read(AsyncServerStreamingCall<Proto.GenerateResponse> call)
        {
            var text = new StringBuilder();
            string finish = "";
            await foreach (var r in call.ResponseStream.ReadAllAsync())
            {
                text.Append(r.Text);
                if (r.FinishReason.Length > 0) finish = r.FinishReason;
            }
            return (text.ToString(), finish);
        }

        var generate = new Proto.GenerateRequest { Text = "The answer is", Sampling = sampling, Constraint = new Proto.OutputConstraint { Regex = "(yes|no), because [a-z ]{3,30}\\." } };
        var (answer, finish) = await Read(inference.Generate(generate));
        Assert.Matches(@"^(yes|no), because [a-z ]{3,30}\.$", answer);
        Assert.Equal("stop", finish);

        string schema = Schemas[0];
        var sessions = new Proto.Sessions.SessionsClient(channel);
        var session = await sessions.CreateSessionAsync(new Proto.CreateSessionRequest());
        for (int turn = 0; turn < 2; turn++)
        {
            var chat = new Proto.ChatRequest { SessionId = session.SessionId, Sampling = sampling, Constraint = new Proto.OutputConstraint { JsonSchema = schema } };
            chat.Messages.Add(new Proto.Message { Role = "user", Content = $"Person {turn} as JSON." });
            var (json, _) = await Read(inference.Chat(chat));
            AssertValid(schema, json, $"session turn {turn}");
        }

        var bad = new Proto.GenerateRequest { Text = "x", Constraint = new Proto.OutputConstraint { JsonSchema = """{"type": "object", "properties": {"a": {"not": {}}}}""" } };
        var refused = await Assert.ThrowsAsync<RpcException>(() => Read(inference.Generate(bad)));
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.Contains("constraint.json_schema.properties.a.not", refused.Status.Detail);
    }

    [Fact]
    public async Task OverGrpcChatTakesToolsAndGivesBackCallsInASessionToo()
    {
        using var channel = fixture.Channel();
        var inference = new Proto.Inference.InferenceClient(channel);
        var sampling = new Proto.SamplingParams { Temperature = 1.0f, Seed = 21, MaxTokens = 80 };
        Proto.Tool[] tools = [.. Tools.Select(t => new Proto.Tool { Name = t.Name, Description = $"The {t.Name} tool", ParametersJson = t.Parameters })];

        async Task<(List<Proto.ToolCall> Calls, string Text, string Finish, Proto.Usage? Usage)> Read(Proto.ChatRequest request)
        {
            var calls = new List<Proto.ToolCall>();
            var text = new StringBuilder();
            string finish = "";
            Proto.Usage? usage = null;
            using var call = inference.Chat(request);
            await foreach (var r in call.ResponseStream.ReadAllAsync())
            {
                calls.AddRange(r.ToolCalls);
                text.Append(r.Text);
                if (r.FinishReason.Length > 0) finish = r.FinishReason;
                usage = r.Usage ?? usage;
            }
            return (calls, text.ToString(), finish, usage);
        }

        void AssertCalls(List<Proto.ToolCall> calls, string finish, string what)
        {
            Assert.True(calls.Count > 0, $"{what}: no call ({finish})");
            Assert.Equal("tool_calls", finish);
            foreach (var c in calls)
            {
                Assert.StartsWith("call_", c.Id);
                AssertValid(Assert.Single(Tools, t => t.Name == c.Name).Parameters, c.ArgumentsJson, $"{what}: {c.Name}");
            }
        }

        var plain = new Proto.ChatRequest { Sampling = sampling, ToolChoice = "required" };
        plain.Tools.AddRange(tools);
        plain.Messages.Add(new Proto.Message { Role = "user", Content = "Weather in Bern?" });
        var (calls, text, finish, _) = await Read(plain);
        AssertCalls(calls, finish, "one call");
        Assert.DoesNotContain("<tool_call>", text);

        var session = await new Proto.Sessions.SessionsClient(channel).CreateSessionAsync(new Proto.CreateSessionRequest());
        var first = new Proto.ChatRequest { SessionId = session.SessionId, Sampling = sampling, ToolChoice = "search" };
        first.Tools.AddRange(tools);
        first.Messages.Add(new Proto.Message { Role = "user", Content = "Find me a recipe." });
        var turn1 = await Read(first);
        AssertCalls(turn1.Calls, turn1.Finish, "session turn 1");
        Assert.All(turn1.Calls, c => Assert.Equal("search", c.Name));

        // The call's result goes back as a tool message; the session holds the tools and the call already.
        var second = new Proto.ChatRequest { SessionId = session.SessionId, Sampling = sampling, ToolChoice = "required" };
        second.Tools.AddRange(tools);
        second.Messages.Add(new Proto.Message { Role = "tool", ToolCallId = turn1.Calls[0].Id, Content = """{"results": ["soup"]}""" });
        var turn2 = await Read(second);
        AssertCalls(turn2.Calls, turn2.Finish, "session turn 2");
        Assert.True(turn2.Usage!.CachedPromptTokens > 200, $"the session's history should be cached: {turn2.Usage.CachedPromptTokens}");

        var bad = new Proto.ChatRequest { Sampling = sampling, ToolChoice = "nope" };
        bad.Tools.Add(new Proto.Tool { Name = "a b" });
        bad.Messages.Add(new Proto.Message { Role = "user", Content = "hi" });
        var refused = await Assert.ThrowsAsync<RpcException>(() => Read(bad));
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.Contains("tools[0].name", refused.Status.Detail);
    }

    [Fact]
    public async Task TheSdkSendsAForcedCallsResultBackForASecondTurn()
    {
        var options = new ChatCompletionOptions { Temperature = 1.0f, Seed = 77, MaxOutputTokenCount = 64, ToolChoice = ChatToolChoice.CreateRequiredChoice() };
        foreach (var (name, parameters) in Tools) options.Tools.Add(ChatTool.CreateFunctionTool(name, $"The {name} tool", BinaryData.FromString(parameters)));
        List<ChatMessage> conversation = [new UserChatMessage("What is the weather in Oslo?")];
        ChatCompletion first = await Chat().CompleteChatAsync(conversation, options);
        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        conversation.Add(new AssistantChatMessage(first));
        foreach (var call in first.ToolCalls) conversation.Add(new ToolChatMessage(call.Id, """{"temperature_c": 4, "sky": "overcast"}"""));

        options.ToolChoice = ChatToolChoice.CreateAutoChoice();
        ChatCompletion second = await Chat().CompleteChatAsync(conversation, options);
        // The second turn's prompt is the first's, the call as the template renders it, and the result.
        Assert.True(second.Usage.InputTokenCount > first.Usage.InputTokenCount + first.Usage.OutputTokenCount,
            $"{second.Usage.InputTokenCount} <= {first.Usage.InputTokenCount} + {first.Usage.OutputTokenCount}");
        // Up to the assistant turn (where the first had its empty think block and the forced opening) the prompts agree:
        // all but the last two 16-token blocks of the first come from the prefix cache.
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount >= first.Usage.InputTokenCount - 32,
            $"cached {second.Usage.InputTokenDetails.CachedTokenCount} of the first's {first.Usage.InputTokenCount}");
    }
}
