using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Gateway;

/// <summary>Writes a generation as OpenAI's chat.completion / text_completion objects, whole or as SSE chunks.</summary>
public sealed class OpenAiResponseWriter(HttpContext http, ServedModel model, OpenAiEndpoints.Call call, bool chat)
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
        if (chat) choice["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text.ToString() };
        else choice["text"] = text.ToString();
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
        while (any)
        {
            var e = enumerator.Current;
            if (e.Error is { } error)
            {
                RequestMetrics.Failed(error.Kind);
                await Send(OpenAiErrors.Body(error), cancellationToken);
                break;
            }
            if (e.Text.Length > 0 || e.Tokens.Count > 0 || e.FinishReason is not null)
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

    JsonObject Chunk(JsonObject? delta, GenerationUpdate? e, JsonNode? logprobs)
    {
        var choice = new JsonObject { ["index"] = 0, ["logprobs"] = logprobs, ["finish_reason"] = e?.FinishReason };
        if (chat) choice["delta"] = delta;
        else choice["text"] = e?.Text ?? "";
        var chunk = Envelope(chat ? "chat.completion.chunk" : "text_completion");
        chunk["choices"] = new JsonArray(choice);
        return chunk;
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
