using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>
/// Every malformed request over gRPC and HTTP gets its status and a message naming the field; the next valid
/// request still gets exactly the answer it got before.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class BadInputTests(ServerFixture fixture)
{
    static GenerateRequest Ids(params int[] ids)
    {
        var r = new GenerateRequest { TokenIds = new TokenIds(), Sampling = new SamplingParams { Temperature = 0, MaxTokens = 4 } };
        r.TokenIds.Ids.AddRange(ids);
        return r;
    }

    static GenerateRequest With(Action<SamplingParams> change)
    {
        var r = Ids(1000, 2000, 3000);
        change(r.Sampling);
        return r;
    }

    static ChatRequest ChatWith(string session, params (string Role, string Content)[] messages)
    {
        var r = new ChatRequest { SessionId = session, Sampling = new SamplingParams { Temperature = 0, MaxTokens = 4 } };
        r.Messages.AddRange(messages.Select(m => new Message { Role = m.Role, Content = m.Content }));
        return r;
    }

    public static TheoryData<string> GrpcCases => [.. GrpcTable.Keys];

    static readonly Dictionary<string, (Func<Inference.InferenceClient, Sessions.SessionsClient, Task> Call, StatusCode Status, string Field)> GrpcTable = new()
    {
        ["no prompt"] = (async (c, _) => await Drain(c.Generate(new GenerateRequest())), StatusCode.InvalidArgument, "text"),
        ["empty text"] = (async (c, _) => await Drain(c.Generate(new GenerateRequest { Text = "" })), StatusCode.InvalidArgument, "text"),
        ["empty token ids"] = (async (c, _) => await Drain(c.Generate(Ids())), StatusCode.InvalidArgument, "token_ids"),
        ["token id past the vocabulary"] = (async (c, _) => await Drain(c.Generate(Ids(5, 10_000_000))), StatusCode.InvalidArgument, "token_ids[1]"),
        ["negative token id"] = (async (c, _) => await Drain(c.Generate(Ids(-3))), StatusCode.InvalidArgument, "token_ids[0]"),
        ["prompt longer than the context window"] = (async (c, _) => await Drain(c.Generate(Ids([.. Enumerable.Repeat(1000, 41_000)]))), StatusCode.InvalidArgument, "prompt"),
        ["negative max_tokens"] = (async (c, _) => await Drain(c.Generate(With(s => s.MaxTokens = -5))), StatusCode.InvalidArgument, "sampling.max_tokens"),
        ["absurd max_tokens"] = (async (c, _) => await Drain(c.Generate(With(s => s.MaxTokens = 1_000_000_000))), StatusCode.InvalidArgument, "sampling.max_tokens"),
        ["negative temperature"] = (async (c, _) => await Drain(c.Generate(With(s => s.Temperature = -1))), StatusCode.InvalidArgument, "sampling.temperature"),
        ["top_p zero"] = (async (c, _) => await Drain(c.Generate(With(s => s.TopP = 0))), StatusCode.InvalidArgument, "sampling.top_p"),
        ["top_p above one"] = (async (c, _) => await Drain(c.Generate(With(s => s.TopP = 1.5f))), StatusCode.InvalidArgument, "sampling.top_p"),
        ["negative top_k"] = (async (c, _) => await Drain(c.Generate(With(s => s.TopK = -1))), StatusCode.InvalidArgument, "sampling.top_k"),
        ["too many stop strings"] = (async (c, _) => await Drain(c.Generate(With(s => s.Stop.AddRange(Enumerable.Range(0, 17).Select(i => $"s{i}"))))), StatusCode.InvalidArgument, "sampling.stop"),
        ["too many logprobs"] = (async (c, _) => await Drain(c.Generate(With(s => s.Logprobs = 50))), StatusCode.InvalidArgument, "sampling.logprobs"),
        ["stop token id past the vocabulary"] = (async (c, _) => await Drain(c.Generate(With(s => s.StopTokenIds.Add(9_999_999)))), StatusCode.InvalidArgument, "sampling.stop_token_ids"),
        ["unknown model"] = (async (c, _) => await Drain(c.Generate(new GenerateRequest { Model = "gpt-9", Text = "hi" })), StatusCode.NotFound, "model"),
        ["unknown session"] = (async (c, _) => await Drain(c.Chat(ChatWith("nosuchsession", ("user", "hi")))), StatusCode.NotFound, "session_id"),
        ["malformed session id"] = (async (c, _) => await Drain(c.Chat(ChatWith("bad\u0001id", ("user", "hi")))), StatusCode.InvalidArgument, "session_id"),
        ["deleted session"] = (async (c, s) =>
        {
            var session = await s.CreateSessionAsync(new CreateSessionRequest());
            await s.DeleteSessionAsync(new DeleteSessionRequest { SessionId = session.SessionId });
            await Drain(c.Chat(ChatWith(session.SessionId, ("user", "hi"))));
        }, StatusCode.NotFound, "session_id"),
        ["no messages"] = (async (c, _) => await Drain(c.Chat(ChatWith(""))), StatusCode.InvalidArgument, "messages"),
        ["unknown role"] = (async (c, _) => await Drain(c.Chat(ChatWith("", ("wizard", "hi")))), StatusCode.InvalidArgument, "messages[0].role"),
        ["tokenize without input"] = (async (c, _) => await c.TokenizeAsync(new TokenizeRequest()), StatusCode.InvalidArgument, "text"),
        ["negative session ttl"] = (async (_, s) => await s.CreateSessionAsync(new CreateSessionRequest { TtlSeconds = -1 }), StatusCode.InvalidArgument, "ttl_seconds"),
    };

    static async Task Drain<T>(AsyncServerStreamingCall<T> call)
    {
        await foreach (var _ in call.ResponseStream.ReadAllAsync()) { }
    }

    async Task<int[]> ValidAnswerAsync(Inference.InferenceClient client)
    {
        var ids = new List<int>();
        await foreach (var r in client.Generate(Ids(1000, 2000, 3000, 4000)).ResponseStream.ReadAllAsync()) ids.AddRange(r.Tokens.Select(t => t.Id));
        return [.. ids];
    }

    [Theory, MemberData(nameof(GrpcCases))]
    public async Task GrpcRefusesWithTheFieldAndStaysUnchanged(string name)
    {
        using var channel = fixture.Channel();
        var client = new Inference.InferenceClient(channel);
        var before = await ValidAnswerAsync(client);
        var (call, status, field) = GrpcTable[name];
        var error = await Assert.ThrowsAsync<RpcException>(() => call(client, new Sessions.SessionsClient(channel)));
        Assert.Equal(status, error.StatusCode);
        Assert.StartsWith(field + ":", error.Status.Detail);
        Assert.Equal(before, await ValidAnswerAsync(client));
    }

    [Fact]
    public async Task GrpcRefusesAnOversizedMessageAndStaysUnchanged()
    {
        using var channel = fixture.Channel();
        var client = new Inference.InferenceClient(channel);
        var before = await ValidAnswerAsync(client);
        var huge = new GenerateRequest { Text = new string('a', 17 * 1024 * 1024) };
        var error = await Assert.ThrowsAsync<RpcException>(() => Drain(client.Generate(huge)));
        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Equal(before, await ValidAnswerAsync(client));
    }

    [Fact]
    public async Task GrpcRefusesInvalidUtf8NamingTheField()
    {
        using var channel = fixture.Channel();
        var raw = new Method<byte[], byte[]>(MethodType.ServerStreaming, "qwen3cluster.v1.Inference", "Chat",
            Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));
        // ChatRequest { messages: [{ role: "user", content: 0xC3 0x28 }] }: an invalid two-byte sequence.
        byte[] message = [0x1A, 0x0A, 0x0A, 0x04, (byte)'u', (byte)'s', (byte)'e', (byte)'r', 0x12, 0x02, 0xC3, 0x28];
        var call = channel.CreateCallInvoker().AsyncServerStreamingCall(raw, null, new CallOptions(), message);
        var error = await Assert.ThrowsAsync<RpcException>(async () => { await foreach (var _ in call.ResponseStream.ReadAllAsync()) { } });
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Equal("messages[0].content: is not valid UTF-8", error.Status.Detail);
    }

    public static TheoryData<string> HttpCases => [.. HttpTable.Keys];

    static readonly Dictionary<string, (string Path, string ContentType, string Body, HttpStatusCode Status, string? Param)> HttpTable = new()
    {
        ["malformed JSON"] = ("/v1/chat/completions", "application/json", "{\"messages\": [", HttpStatusCode.BadRequest, null),
        ["not an object"] = ("/v1/chat/completions", "application/json", "[1, 2]", HttpStatusCode.BadRequest, null),
        ["wrong content type"] = ("/v1/chat/completions", "text/plain", "hello", HttpStatusCode.UnsupportedMediaType, null),
        ["missing messages"] = ("/v1/chat/completions", "application/json", "{}", HttpStatusCode.BadRequest, "messages"),
        ["empty messages"] = ("/v1/chat/completions", "application/json", "{\"messages\": []}", HttpStatusCode.BadRequest, "messages"),
        ["unknown role"] = ("/v1/chat/completions", "application/json", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", HttpStatusCode.BadRequest, "messages[0].role"),
        ["content part with a numeric type"] = ("/v1/chat/completions", "application/json", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": 3}]}]}", HttpStatusCode.BadRequest, "messages[0].content"),
        ["tool call not an object"] = ("/v1/chat/completions", "application/json", "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\", \"tool_calls\": [7]}]}", HttpStatusCode.BadRequest, "messages[0].tool_calls[0]"),
        ["non-text content part"] = ("/v1/chat/completions", "application/json", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", HttpStatusCode.BadRequest, "messages[0].content"),
        ["negative temperature"] = ("/v1/chat/completions", "application/json", Chat("\"temperature\": -0.5"), HttpStatusCode.BadRequest, "temperature"),
        ["temperature as text"] = ("/v1/chat/completions", "application/json", Chat("\"temperature\": \"hot\""), HttpStatusCode.BadRequest, "temperature"),
        ["top_p zero"] = ("/v1/chat/completions", "application/json", Chat("\"top_p\": 0"), HttpStatusCode.BadRequest, "top_p"),
        ["top_p above one"] = ("/v1/chat/completions", "application/json", Chat("\"top_p\": 1.01"), HttpStatusCode.BadRequest, "top_p"),
        ["top_k below -1"] = ("/v1/chat/completions", "application/json", Chat("\"top_k\": -2"), HttpStatusCode.BadRequest, "top_k"),
        ["zero max_tokens"] = ("/v1/chat/completions", "application/json", Chat("\"max_tokens\": 0"), HttpStatusCode.BadRequest, "max_tokens"),
        ["negative max_completion_tokens"] = ("/v1/chat/completions", "application/json", Chat("\"max_completion_tokens\": -1"), HttpStatusCode.BadRequest, "max_completion_tokens"),
        ["absurd max_tokens"] = ("/v1/chat/completions", "application/json", Chat("\"max_tokens\": 100000000"), HttpStatusCode.BadRequest, "max_tokens"),
        ["n of two"] = ("/v1/chat/completions", "application/json", Chat("\"n\": 2"), HttpStatusCode.BadRequest, "n"),
        ["too many top_logprobs"] = ("/v1/chat/completions", "application/json", Chat("\"logprobs\": true, \"top_logprobs\": 30"), HttpStatusCode.BadRequest, "top_logprobs"),
        ["top_logprobs without logprobs"] = ("/v1/chat/completions", "application/json", Chat("\"top_logprobs\": 2"), HttpStatusCode.BadRequest, "top_logprobs"),
        ["too many stop strings"] = ("/v1/chat/completions", "application/json", Chat($"\"stop\": [{string.Join(',', Enumerable.Range(0, 20).Select(i => $"\"s{i}\""))}]"), HttpStatusCode.BadRequest, "stop"),
        ["stop not strings"] = ("/v1/chat/completions", "application/json", Chat("\"stop\": [1, 2]"), HttpStatusCode.BadRequest, "stop"),
        ["penalty out of range"] = ("/v1/chat/completions", "application/json", Chat("\"frequency_penalty\": 3"), HttpStatusCode.BadRequest, "frequency_penalty"),
        ["thinking switch not a bool"] = ("/v1/chat/completions", "application/json", Chat("\"chat_template_kwargs\": {\"enable_thinking\": \"no\"}"), HttpStatusCode.BadRequest, "chat_template_kwargs.enable_thinking"),
        ["unknown model"] = ("/v1/chat/completions", "application/json", "{\"model\": \"gpt-9\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", HttpStatusCode.NotFound, "model"),
        ["completion without prompt"] = ("/v1/completions", "application/json", "{\"max_tokens\": 3}", HttpStatusCode.BadRequest, "prompt"),
        ["completion token past the vocabulary"] = ("/v1/completions", "application/json", "{\"prompt\": [1, 99999999]}", HttpStatusCode.BadRequest, "prompt[1]"),
        ["completion prompt longer than the context"] = ("/v1/completions", "application/json", $"{{\"prompt\": [{string.Join(',', Enumerable.Repeat(1000, 41_000))}]}}", HttpStatusCode.BadRequest, "prompt"),
        ["two prompts"] = ("/v1/completions", "application/json", "{\"prompt\": [\"a\", \"b\"]}", HttpStatusCode.BadRequest, "prompt"),
        ["echo"] = ("/v1/completions", "application/json", "{\"prompt\": \"a\", \"echo\": true}", HttpStatusCode.BadRequest, "echo"),
        ["oversized body"] = ("/v1/completions", "application/json", "{\"prompt\": \"" + new string('a', 9 * 1024 * 1024) + "\"}", HttpStatusCode.RequestEntityTooLarge, null),
    };

    static string Chat(string extra) => $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}], {extra}}}";

    static HttpClient Http(ServerFixture f, string? key = ServerFixture.KeyA)
    {
        var http = new HttpClient { BaseAddress = new Uri(f.Server.HttpAddress) };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    static async Task<string> ValidHttpAnswerAsync(HttpClient http)
    {
        using var response = await http.PostAsync("/v1/completions",
            new StringContent("{\"prompt\": [1000, 2000, 3000], \"max_tokens\": 4, \"temperature\": 0}", Encoding.UTF8, "application/json"));
        response.EnsureSuccessStatusCode();
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    [Theory, MemberData(nameof(HttpCases))]
    public async Task HttpRefusesWithOpenAisErrorShapeAndStaysUnchanged(string name)
    {
        using var http = Http(fixture);
        string before = await ValidHttpAnswerAsync(http);
        var (path, type, body, status, param) = HttpTable[name];
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue(type);
        // As curl does for large bodies: wait for the server's go-ahead, so a refused body is never sent.
        using var message = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
        message.Headers.ExpectContinue = true;
        using var response = await http.SendAsync(message);
        Assert.Equal(status, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var e = error.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(e.GetProperty("message").GetString()));
        Assert.Equal(param, e.GetProperty("param").GetString());
        if (param is not null) Assert.StartsWith(param + ":", e.GetProperty("message").GetString());
        Assert.Equal(before, await ValidHttpAnswerAsync(http));
    }

    [Fact]
    public async Task InvalidUtf8InAJsonBodyIsRefused()
    {
        using var http = Http(fixture);
        byte[] body = [.. Encoding.UTF8.GetBytes("{\"prompt\": \"a"), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\"}")];
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync("/v1/completions", content);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("not valid JSON", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task MissingOrWrongKeysAreRefusedOnBothProtocols()
    {
        using var anonymous = Http(fixture, key: null);
        using var wrong = Http(fixture, key: "not-a-key");
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/models")).StatusCode);
        var refused = await wrong.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal("invalid_api_key", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/healthz")).StatusCode);
        // Claiming to be gRPC in a header does not open the HTTP API.
        using var disguised = new HttpRequestMessage(HttpMethod.Get, "/v1/models") { Content = new ByteArrayContent([]) };
        disguised.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.SendAsync(disguised)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/dashboard/")).StatusCode);

        using var channel = GrpcChannel.ForAddress(fixture.Server.GrpcAddress);
        var error = await Assert.ThrowsAsync<RpcException>(() => new Inference.InferenceClient(channel).ListModelsAsync(new ListModelsRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        using var wrongChannel = fixture.Channel("not-a-key");
        error = await Assert.ThrowsAsync<RpcException>(() => new Inference.InferenceClient(wrongChannel).ListModelsAsync(new ListModelsRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
    }

    [Fact]
    public async Task ASessionBelongsToTheKeyThatCreatedIt()
    {
        using var a = fixture.Channel(ServerFixture.KeyA);
        using var b = fixture.Channel(ServerFixture.KeyB);
        var sessionsA = new Sessions.SessionsClient(a);
        var sessionsB = new Sessions.SessionsClient(b);
        var session = await sessionsA.CreateSessionAsync(new CreateSessionRequest());

        var get = await Assert.ThrowsAsync<RpcException>(() => sessionsB.GetSessionAsync(new GetSessionRequest { SessionId = session.SessionId }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, get.StatusCode);
        var chat = await Assert.ThrowsAsync<RpcException>(() => Drain(new Inference.InferenceClient(b).Chat(ChatWith(session.SessionId, ("user", "hi")))));
        Assert.Equal(StatusCode.NotFound, chat.StatusCode);
        var delete = await Assert.ThrowsAsync<RpcException>(() => sessionsB.DeleteSessionAsync(new DeleteSessionRequest { SessionId = session.SessionId }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, delete.StatusCode);

        await Drain(new Inference.InferenceClient(a).Chat(ChatWith(session.SessionId, ("user", "hi"))));
        Assert.Equal(1, (await sessionsA.GetSessionAsync(new GetSessionRequest { SessionId = session.SessionId })).Turns);
        await sessionsA.DeleteSessionAsync(new DeleteSessionRequest { SessionId = session.SessionId });
    }
}
