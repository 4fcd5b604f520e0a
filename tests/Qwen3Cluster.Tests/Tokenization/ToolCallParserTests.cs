using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Tests.Tokenization;

/// <summary>Qwen3's Hermes-style tool calls read out of replies written by hand, whole and streamed in pieces.</summary>
public sealed class ToolCallParserTests
{
    const string Weather = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 3}}\n</tool_call>";
    const string Time = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>";

    [Fact]
    public void SeveralCallsWithTextBeforeThem()
    {
        var (content, calls, warnings) = ToolCallParser.Parse($"Let me look that up.\n\n{Weather}\n{Time}");
        Assert.Equal("Let me look that up.\n\n", content);
        Assert.Equal([("get_weather", "{\"city\":\"Zürich\",\"days\":3}"), ("get_time", "{\"zone\":\"CET\"}")],
            calls.Select(c => (c.Name, c.Arguments)));
        Assert.Equal([0, 1], calls.Select(c => c.Index));
        Assert.Empty(warnings);
    }

    [Fact]
    public void AReplyWithoutCallsIsAllContentEvenWithAngleBrackets()
    {
        string reply = "x < y and <b>bold</b>, but no <tool_cal";
        var (content, calls, _) = ToolCallParser.Parse(reply);
        Assert.Equal(reply, content);
        Assert.Empty(calls);
    }

    [Fact]
    public void MalformedJsonInsideACallStaysContentWithAWarning()
    {
        string broken = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call>";
        var (content, calls, warnings) = ToolCallParser.Parse($"Trying. {broken}{Time}");
        Assert.Equal($"Trying. {broken}", content);
        Assert.Equal("get_time", Assert.Single(calls).Name);
        Assert.Equal(0, calls[0].Index);
        Assert.Contains("not valid JSON", Assert.Single(warnings));

        var (_, none, why) = ToolCallParser.Parse("<tool_call>{\"arguments\": {}}</tool_call>");
        Assert.Empty(none);
        Assert.Contains("no \"name\"", Assert.Single(why));
    }

    [Fact]
    public void AnUnclosedCallIsContent()
    {
        var (content, calls, warnings) = ToolCallParser.Parse("Sure: <tool_call>\n{\"name\": \"get_time\"");
        Assert.Equal("Sure: <tool_call>\n{\"name\": \"get_time\"", content);
        Assert.Empty(calls);
        Assert.Contains("never closed", Assert.Single(warnings));
    }

    [Fact]
    public void ACallWithoutArgumentsHasAnEmptyObject()
    {
        var (_, calls, _) = ToolCallParser.Parse("<tool_call>\n{\"name\": \"now\"}\n</tool_call>");
        Assert.Equal("{}", Assert.Single(calls).Arguments);
    }

    /// <summary>Every way of cutting the reply into stream chunks gives the same content and calls, and never a partial tag as content.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(11)]
    public void TagsSplitAcrossChunksNeverLeakIntoContent(int chunk)
    {
        string reply = $"Checking <b>both</b>.\n{Weather}\n{Time}\n";
        var parser = new ToolCallParser();
        var events = new List<ToolCallEvent>();
        for (int i = 0; i < reply.Length; i += chunk)
        {
            var piece = parser.Push(reply.Substring(i, Math.Min(chunk, reply.Length - i)));
            Assert.All(piece.OfType<ContentEvent>(), e => Assert.DoesNotContain("<tool", e.Text));
            events.AddRange(piece);
        }
        events.AddRange(parser.Finish());
        Assert.Equal("Checking <b>both</b>.\n", string.Concat(events.OfType<ContentEvent>().Select(e => e.Text)));
        Assert.Equal(["get_weather", "get_time"], events.OfType<CallEvent>().Select(c => c.Name));
        // Content before the first call comes out before it.
        Assert.IsType<ContentEvent>(events[0]);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(3)]
    public void AClosingTagInsideAnArgumentStringIsText(int chunk)
    {
        string reply = "<tool_call>\n{\"name\": \"note\", \"arguments\": {\"text\": \"ends with </tool_call> and \\\" </tool_call>\"}}\n</tool_call>";
        var parser = new ToolCallParser();
        var events = new List<ToolCallEvent>();
        for (int i = 0; i < reply.Length; i += chunk) events.AddRange(parser.Push(reply.Substring(i, Math.Min(chunk, reply.Length - i))));
        events.AddRange(parser.Finish());
        var call = Assert.Single(events.OfType<CallEvent>());
        Assert.Equal("{\"text\":\"ends with </tool_call> and \\\" </tool_call>\"}", call.Arguments);
        Assert.Empty(events.OfType<ContentEvent>());
        Assert.Empty(parser.Warnings);
    }
}
