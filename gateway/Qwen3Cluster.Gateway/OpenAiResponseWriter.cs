using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Qwen3Cluster.Model.Engine;
using Microsoft.Extensions.Logging;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// Writes a generation as OpenAI's chat.completion / text_completion objects, whole or as SSE chunks. With tools, a
/// chat reply is read for calls (<see cref="ToolCallParser"/>): they become <c>message.tool_calls</c> (streamed as
/// <c>delta.tool_calls</c>: the id and name first, then the arguments) and the finish reason <c>tool_calls</c>; the
/// text around them stays content.
/// </summary>
public sealed class OpenAiResponseWriter(HttpContext http, ServedModel model, OpenAiEndpoints.Call call, bool chat,
    ILogger? logger = null)
{
    readonly string _id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
    readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    int _textOffset;

    public async Task WholeAsync(IAsyncEnumerable<GenerationUpdate> events, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        var tokens = new List<GeneratedToken>();
        GenerationUpdate? last = null;
        await foreach (var e in events.WithCancellation(cancellationToken))
        {
            if (e.Error is { } error) throw error;
            text.Append(e.Text);
            tokens.AddRange(e.Tokens);
            last = e;
        }
        var choice = new JsonObject { ["index"] = 0, ["finish_reason"] = last?.FinishReason, ["logprobs"] = Logprobs(tokens) };
        if (chat && call.Tools.ParsesCalls)
        {
            var (content, calls, warnings) = ToolCallParser.Parse(call.Tools.ForcedPrefix + text);
            Warn(warnings);
            var message = new JsonObject { ["role"] = "assistant", ["content"] = calls.Count > 0 && content.Length == 0 ? null : content };
            if (calls.Count > 0)
            {
                message["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)new JsonObject
                {
                    ["id"] = CallId(),
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Arguments },
                }).ToArray());
                // A reply cut short keeps "length" (as vLLM reports it): only a reply that ended by itself is "tool_calls".
                if (last?.FinishReason == FinishReasons.Stop) choice["finish_reason"] = "tool_calls";
            }
            choice["message"] = message;
        }
        else if (chat)
        {
            choice["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text.ToString() };
        }
        else
        {
            choice["text"] = text.ToString();
        }
        var body = Envelope(chat ? "chat.completion" : "text_completion");
        body["choices"] = new JsonArray(choice);
        body["usage"] = Usage(last?.Usage);
        http.Response.ContentType = "application/json";
        await http.Response.WriteAsync(body.ToJsonString(), cancellationToken);
    }

    public async Task StreamAsync(IAsyncEnumerable<GenerationUpdate> events, bool includeUsage, CancellationToken cancellationToken)
    {
        await using var enumerator = events.GetAsyncEnumerator(cancellationToken);
        // Refusals become an error response rather than a stream, so read the first event before committing.
        bool any = await enumerator.MoveNextAsync();
        if (any && enumerator.Current.Error is { } refused) throw refused;
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        if (chat) await Send(Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null, null), cancellationToken);
        GenerationUsage? usage = null;
        ToolCallParser? parser = chat && call.Tools.ParsesCalls ? new ToolCallParser() : null;
        parser?.Push(call.Tools.ForcedPrefix);
        while (any)
        {
            var e = enumerator.Current;
            if (e.Error is { } error)
            {
                RequestMetrics.Failed(error.Kind);
                await Send(OpenAiErrors.Body(error), cancellationToken);
                break;
            }
            if (parser is not null)
            {
                var parsed = parser.Push(e.Text).ToList();
                if (e.FinishReason is not null)
                {
                    parsed.AddRange(parser.Finish());
                    Warn(parser.Warnings);
                }
                foreach (var c in parsed.OfType<CallEvent>())
                {
                    // The id and name first, then the arguments, as OpenAI streams a call.
                    await Send(Chunk(ToolCallDelta(new JsonObject
                    {
                        ["index"] = c.Index, ["id"] = CallId(), ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = "" },
                    }), null, null), cancellationToken);
                    await Send(Chunk(ToolCallDelta(new JsonObject
                    {
                        ["index"] = c.Index, ["function"] = new JsonObject { ["arguments"] = c.Arguments },
                    }), null, null), cancellationToken);
                }
                string content = string.Concat(parsed.OfType<ContentEvent>().Select(x => x.Text));
                string? finish = e.FinishReason is null ? null : parser.Calls > 0 && e.FinishReason == FinishReasons.Stop ? "tool_calls" : e.FinishReason;
                if (content.Length > 0 || (call.Logprobs && e.Tokens.Count > 0) || finish is not null)
                    await Send(Chunk(new JsonObject { ["content"] = content }, e, Logprobs(e.Tokens), finish), cancellationToken);
            }
            else if (e.Text.Length > 0 || e.Tokens.Count > 0 || e.FinishReason is not null)
            {
                var delta = chat ? new JsonObject { ["content"] = e.Text } : null;
                await Send(Chunk(delta, e, Logprobs(e.Tokens)), cancellationToken);
            }
            usage = e.Usage ?? usage;
            any = await enumerator.MoveNextAsync();
        }
        if (includeUsage)
        {
            var final = Envelope(chat ? "chat.completion.chunk" : "text_completion");
            final["choices"] = new JsonArray();
            final["usage"] = Usage(usage);
            await Send(final, cancellationToken);
        }
        await http.Response.WriteAsync("data: [DONE]\n\n", cancellationToken);
        await http.Response.Body.FlushAsync(cancellationToken);
    }

    JsonObject Chunk(JsonObject? delta, GenerationUpdate? e, JsonNode? logprobs, string? finish = null)
    {
        var choice = new JsonObject { ["index"] = 0, ["logprobs"] = logprobs, ["finish_reason"] = finish ?? e?.FinishReason };
        if (chat) choice["delta"] = delta;
        else choice["text"] = e?.Text ?? "";
        var chunk = Envelope(chat ? "chat.completion.chunk" : "text_completion");
        chunk["choices"] = new JsonArray(choice);
        return chunk;
    }

    static JsonObject ToolCallDelta(JsonObject call) => new() { ["tool_calls"] = new JsonArray(call) };

    static string CallId() => "call_" + Guid.NewGuid().ToString("N")[..24];

    void Warn(IReadOnlyList<string> warnings)
    {
        foreach (string w in warnings) logger?.LogWarning("Tool call parsing: {Warning}", w);
    }

    async Task Send(JsonObject json, CancellationToken cancellationToken)
    {
        await http.Response.WriteAsync($"data: {json.ToJsonString()}\n\n", cancellationToken);
        await http.Response.Body.FlushAsync(cancellationToken);
    }

    JsonObject Envelope(string type) => new()
    {
        ["id"] = _id,
        ["object"] = type,
        ["created"] = _created,
        ["model"] = model.Name,
    };

    static JsonObject? Usage(GenerationUsage? u) => u is null ? null : new JsonObject
    {
        ["prompt_tokens"] = u.PromptTokens,
        ["completion_tokens"] = u.CompletionTokens,
        ["total_tokens"] = u.PromptTokens + u.CompletionTokens,
        ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = u.CachedPromptTokens },
    };

    /// <summary>Chat: <c>{content: [{token, logprob, bytes, top_logprobs}]}</c>; completions: the legacy parallel lists.</summary>
    JsonNode? Logprobs(IReadOnlyList<GeneratedToken> tokens)
    {
        if (!call.Logprobs || tokens.Count == 0) return null;
        if (chat)
        {
            return new JsonObject
            {
                ["content"] = new JsonArray(tokens.Select(t => (JsonNode)new JsonObject
                {
                    ["token"] = TokenText(t.Id),
                    ["logprob"] = t.Logprob,
                    ["bytes"] = Bytes(t.Id),
                    ["top_logprobs"] = new JsonArray(t.Top.Take(call.TopLogprobs).Select(a => (JsonNode)new JsonObject
                    {
                        ["token"] = TokenText(a.Id),
                        ["logprob"] = a.Logprob,
                        ["bytes"] = Bytes(a.Id),
                    }).ToArray()),
                }).ToArray()),
            };
        }

        var offsets = new JsonArray();
        foreach (var t in tokens)
        {
            offsets.Add(_textOffset);
            _textOffset += t.Text.Length;
        }
        return new JsonObject
        {
            ["tokens"] = new JsonArray(tokens.Select(t => (JsonNode)TokenText(t.Id)).ToArray()),
            ["token_logprobs"] = new JsonArray(tokens.Select(t => (JsonNode)t.Logprob).ToArray()),
            ["top_logprobs"] = new JsonArray(tokens.Select(t =>
            {
                var top = new JsonObject();
                foreach (var a in t.Top.Take(call.TopLogprobs)) top[TokenText(a.Id)] = a.Logprob;
                return (JsonNode)top;
            }).ToArray()),
            ["text_offset"] = offsets,
        };
    }

    string TokenText(int id) => model.Deployment.Tokenizer?.Decode([id]) ?? $"<{id}>";

    JsonArray Bytes(int id) =>
        model.Deployment.Tokenizer is { } t ? new JsonArray(t.GetTokenBytes(id).ToArray().Select(b => (JsonNode)(int)b).ToArray()) : new JsonArray();
}
