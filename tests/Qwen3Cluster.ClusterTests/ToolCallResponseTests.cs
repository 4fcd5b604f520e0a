using System.ClientModel.Primitives;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using OpenAI.Chat;
using Qwen3Cluster.Gateway;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.ClusterTests;

/// <summary>
/// The OpenAI chat response a reply with tool calls becomes, whole and streamed, read back by the official OpenAI .NET
/// SDK's own models; and the checks on <c>tools</c> and <c>tool_choice</c>.
/// </summary>
public sealed class ToolCallResponseTests
{
    const string Reply = "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>\n"
        + "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>";

    static readonly string ToolsJson = """
        [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
        """;

    static ServedModel Model() => new(new ModelDeployment(
        Options.Create(new ModelOptions { Name = "qwen3-test", Path = TestCheckpoints.Get("small-moe", TestCheckpoints.SmallMoe) }),
        Options.Create(new SiloRoleOptions())), grains: null!);

    static OpenAiEndpoints.Call Call(string? choice = null)
    {
        using var tools = JsonDocument.Parse(ToolsJson);
        using var toolChoice = choice is null ? null : JsonDocument.Parse(choice);
        return new OpenAiEndpoints.Call(new GenerationRequest([1, 2, 3], new SamplingParams()), false, 0)
        {
            Tools = ToolChoice.Parse(tools.RootElement, toolChoice?.RootElement),
        };
    }

    /// <summary>The reply (after the forced prefix, if any) in pieces of <paramref name="size"/> characters, then the final update.</summary>
    static async IAsyncEnumerable<GenerationUpdate> Updates(string text, int size)
    {
        for (int i = 0; i < text.Length; i += size)
        {
            await Task.Yield();
            yield return new GenerationUpdate([], text.Substring(i, Math.Min(size, text.Length - i)));
        }
        yield return new GenerationUpdate([], "", FinishReasons.Stop, new GenerationUsage(3, 0, 40));
    }

    static (DefaultHttpContext Http, MemoryStream Body) Http()
    {
        var http = new DefaultHttpContext();
        var body = new MemoryStream();
        http.Response.Body = body;
        return (http, body);
    }

    [Fact]
    public async Task AWholeReplyWithCallsIsReadByTheSdk()
    {
        var (http, body) = Http();
        await new OpenAiResponseWriter(http, Model(), Call(), chat: true).WholeAsync(Updates(Reply, 1000), default);
        var completion = ModelReaderWriter.Read<ChatCompletion>(BinaryData.FromBytes(body.ToArray()))!;
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.Equal("Let me check both.\n", Assert.Single(completion.Content).Text);
        Assert.Equal(["get_weather", "get_time"], completion.ToolCalls.Select(c => c.FunctionName));
        Assert.Equal("{\"city\":\"Zürich\"}", completion.ToolCalls[0].FunctionArguments.ToString());
        Assert.All(completion.ToolCalls, c => Assert.StartsWith("call_", c.Id));
        Assert.Equal(2, completion.ToolCalls.Select(c => c.Id).Distinct().Count());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(17)]
    public async Task AStreamedReplyWithCallsIsReadByTheSdkAndNoTagLeaks(int size)
    {
        var (http, body) = Http();
        await new OpenAiResponseWriter(http, Model(), Call(), chat: true).StreamAsync(Updates(Reply, size), includeUsage: false, default);
        string sse = Encoding.UTF8.GetString(body.ToArray());
        var updates = sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e["data: ".Length..]).Where(d => d != "[DONE]")
            .Select(d => ModelReaderWriter.Read<StreamingChatCompletionUpdate>(BinaryData.FromString(d))!).ToList();
        string content = string.Concat(updates.SelectMany(u => u.ContentUpdate).Select(p => p.Text));
        Assert.Equal("Let me check both.\n", content);
        Assert.DoesNotContain("<tool", content);
        var calls = new SortedDictionary<int, (string Id, string? Name, StringBuilder Arguments)>();
        foreach (var part in updates.SelectMany(u => u.ToolCallUpdates))
        {
            if (!calls.TryGetValue(part.Index, out var call)) calls[part.Index] = call = (part.ToolCallId, part.FunctionName, new StringBuilder());
            Assert.True(part.FunctionName is null || part.FunctionName == call.Name);
            call.Arguments.Append(part.FunctionArgumentsUpdate?.ToString());
        }
        Assert.Equal(["get_weather", "get_time"], calls.Values.Select(c => c.Name));
        Assert.Equal(["{\"city\":\"Zürich\"}", "{\"zone\":\"CET\"}"], calls.Values.Select(c => c.Arguments.ToString()));
        Assert.All(calls.Values, c => Assert.StartsWith("call_", c.Id));
        Assert.Equal(ChatFinishReason.ToolCalls, updates.Last(u => u.FinishReason is not null).FinishReason);
    }

    [Fact]
    public async Task ANamedToolChoiceStartsTheCallAndTheReplyCompletesIt()
    {
        var call = Call("""{"type": "function", "function": {"name": "get_time"}}""");
        Assert.EndsWith("{\"name\": \"get_time\", \"arguments\": ", call.Tools.ForcedPrefix);
        var (http, body) = Http();
        await new OpenAiResponseWriter(http, Model(), call, chat: true).WholeAsync(Updates("{\"zone\": \"UTC\"}}\n</tool_call>", 5), default);
        var completion = ModelReaderWriter.Read<ChatCompletion>(BinaryData.FromBytes(body.ToArray()))!;
        var only = Assert.Single(completion.ToolCalls);
        Assert.Equal(("get_time", "{\"zone\":\"UTC\"}"), (only.FunctionName, only.FunctionArguments.ToString()));
    }

    [Fact]
    public async Task WithToolChoiceNoneTheReplyIsPlainContent()
    {
        var (http, body) = Http();
        await new OpenAiResponseWriter(http, Model(), Call("\"none\""), chat: true).WholeAsync(Updates(Reply, 1000), default);
        var completion = ModelReaderWriter.Read<ChatCompletion>(BinaryData.FromBytes(body.ToArray()))!;
        Assert.Empty(completion.ToolCalls);
        Assert.Equal(Reply, completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
    }

    [Theory]
    [InlineData("""[{"type": "function", "function": {"name": "bad name"}}]""", null, "tools[0].function.name")]
    [InlineData("""[{"type": "retrieval"}]""", null, "tools[0].type")]
    [InlineData("""[{"type": "function", "function": {"name": "a", "parameters": 3}}]""", null, "tools[0].function.parameters")]
    [InlineData("""[{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a"}}]""", null, "tools[1].function.name")]
    [InlineData("""[{"type": "function", "function": {"name": "a"}}]""", "\"sometimes\"", "tool_choice")]
    [InlineData("""[{"type": "function", "function": {"name": "a"}}]""", """{"type": "function", "function": {"name": "b"}}""", "tool_choice.function.name")]
    [InlineData("[]", "\"required\"", "tool_choice")]
    public void BadToolsAreRefusedNamingTheField(string tools, string? choice, string field)
    {
        using var t = JsonDocument.Parse(tools);
        using var c = choice is null ? null : JsonDocument.Parse(choice);
        var error = Assert.Throws<RequestError>(() => ToolChoice.Parse(t.RootElement, c?.RootElement));
        Assert.Equal(ErrorKind.InvalidArgument, error.Kind);
        Assert.Equal(field, error.Field);
    }
}
