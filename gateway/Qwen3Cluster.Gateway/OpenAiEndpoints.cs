using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// OpenAI-compatible HTTP: /v1/chat/completions, /v1/completions (server-sent events ending with
/// <c>data: [DONE]</c>, or one JSON body) and /v1/models, behind the API-key authorization. A request is resolved
/// over the model's sampling defaults, checked once by <see cref="RequestLimits"/> and refused with OpenAI's error
/// object; stateless clients that resend a whole conversation reuse its KV cache through the engine's prefix cache.
/// </summary>
public static class OpenAiEndpoints
{
    public static IEndpointConventionBuilder MapOpenAi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/v1");
        api.MapGet("/models", (ServedModel model) => Results.Json(new { @object = "list", data = new[] { ModelCard(model) } }));
        api.MapGet("/models/{id}", (string id, ServedModel model) => id == model.Name
            ? Results.Json(ModelCard(model))
            : Results.Json(OpenAiErrors.Body(RequestError.NotFound("id", $"model '{id}' does not exist")), statusCode: 404));
        api.MapPost("/chat/completions", (HttpContext http) => Handle(http, chat: true));
        api.MapPost("/completions", (HttpContext http) => Handle(http, chat: false));
        return api;
    }

    static object ModelCard(ServedModel model) => new
    {
        id = model.Name,
        @object = "model",
        created = 0,
        owned_by = "qwen3cluster",
        max_model_len = model.Limits.ContextWindow,
    };

    static async Task Handle(HttpContext http, bool chat)
    {
        long arrived = System.Diagnostics.Stopwatch.GetTimestamp();
        var model = http.RequestServices.GetRequiredService<ServedModel>();
        try
        {
            using var body = await ReadBodyAsync(http);
            var request = new OpenAiRequest(body.RootElement);
            string name = request.String("model") ?? model.Name;
            if (name != model.Name) throw RequestError.NotFound("model", $"'{name}' does not exist; models: {model.Name}");
            if (request.Integer("n") is { } n && n != 1) throw RequestError.Invalid("n", "only 1 choice per request is supported");
            if (request.Integer("best_of") is { } bestOf && bestOf != 1) throw RequestError.Invalid("best_of", "only 1 is supported");
            var call = chat ? ChatCall(request, model) : CompletionCall(request, model);
            using var activity = RequestMetrics.StartRequest(model.Name, null);
            var updates = model.ReplicaFor(call.Request.PromptTokens).Generate(call.Request, http.RequestAborted).Timed(arrived, activity);
            var writer = new OpenAiResponseWriter(http, model, call, chat,
                http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Qwen3Cluster.OpenAi"));
            if (request.Bool("stream") == true)
            {
                bool usage = request.Get("stream_options") is { ValueKind: JsonValueKind.Object } o
                    && o.TryGetProperty("include_usage", out var u) && u.ValueKind == JsonValueKind.True;
                await writer.StreamAsync(updates, usage, http.RequestAborted);
            }
            else
            {
                await writer.WholeAsync(updates, http.RequestAborted);
            }
        }
        catch (Exception e) when (!http.Response.HasStarted && ClusterFaults.AsRequestError(e) is { } error)
        {
            await OpenAiErrors.Write(http, error);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
        }
    }

    static async Task<JsonDocument> ReadBodyAsync(HttpContext http)
    {
        if (http.Request.ContentType is not { } type || !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw new RequestError(ErrorKind.UnsupportedMediaType, null, $"Content-Type must be application/json, got '{http.Request.ContentType}'");
        try
        {
            using var buffer = new MemoryStream();
            await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
            var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
            if (!System.Text.Unicode.Utf8.IsValid(bytes.Span))
                throw new RequestError(ErrorKind.InvalidArgument, null, "The body is not valid JSON: it is not valid UTF-8.");
            var body = JsonDocument.Parse(bytes);
            if (body.RootElement.ValueKind != JsonValueKind.Object) throw new RequestError(ErrorKind.InvalidArgument, null, "The body must be a JSON object.");
            return body;
        }
        catch (JsonException e)
        {
            throw new RequestError(ErrorKind.InvalidArgument, null, $"The body is not valid JSON: {e.Message}");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new RequestError(ErrorKind.PayloadTooLarge, null, "The request body is too large.");
        }
    }

    /// <summary>What a request asks for once resolved and checked: the engine's request, and how to report logprobs.</summary>
    public sealed record Call(GenerationRequest Request, bool Logprobs, int TopLogprobs)
    {
        /// <summary>The request's tools and what the reply may do with them (chat only).</summary>
        public ToolChoice Tools { get; init; } = ToolChoice.NoTools;
    }

    static Call ChatCall(OpenAiRequest r, ServedModel model)
    {
        if (r.Get("messages") is not { } messages) throw RequestError.Invalid("messages", "is required");
        var parsed = ChatMessages.Parse(messages);
        if (parsed.Count == 0) throw RequestError.Invalid("messages", "must not be empty");
        bool? thinking = null;
        if (r.Get("chat_template_kwargs") is { } kwargs)
        {
            if (kwargs.ValueKind != JsonValueKind.Object) throw RequestError.Invalid("chat_template_kwargs", "must be an object");
            if (kwargs.TryGetProperty("enable_thinking", out var t))
            {
                thinking = t.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => throw RequestError.Invalid("chat_template_kwargs.enable_thinking", "must be true or false"),
                };
            }
        }
        var tools = ToolChoice.Parse(r.Get("tools"), r.Get("tool_choice"));
        var constraint = ResponseFormat.Parse(r, tools, model);
        // A forced call or a constrained reply starts at once: no thinking block before it.
        if (constraint is not null) thinking = false;
        var prompt = model.Chat(parsed, thinking, tools: tools);
        bool logprobs = r.Bool("logprobs") ?? false;
        int top = r.Int("top_logprobs") ?? 0;
        if (top > 0 && !logprobs) throw RequestError.Invalid("top_logprobs", "requires logprobs: true");
        string maxField = r.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        var request = new GenerationRequest(prompt, Sampling(r, model, prompt.Length, r.Int(maxField), top)) { Constraint = constraint };
        model.Limits.Check(request, "messages", "messages", field => field switch
        {
            "max_tokens" => maxField,
            "logprobs" => "top_logprobs",
            _ => field,
        });
        return new Call(request, logprobs, top) { Tools = tools };
    }

    static Call CompletionCall(OpenAiRequest r, ServedModel model)
    {
        if (r.Bool("echo") == true) throw RequestError.Invalid("echo", "is not supported");
        if (r.String("suffix") is { Length: > 0 }) throw RequestError.Invalid("suffix", "is not supported");
        int[] prompt = r.Get("prompt") switch
        {
            null => throw RequestError.Invalid("prompt", "is required"),
            { ValueKind: JsonValueKind.String } s => model.Tokenizer("prompt").Encode(s.GetString()!),
            { ValueKind: JsonValueKind.Array } a when a.GetArrayLength() == 1 && a[0].ValueKind == JsonValueKind.String =>
                model.Tokenizer("prompt").Encode(a[0].GetString()!),
            { ValueKind: JsonValueKind.Array } a when a.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number) => Ids(a, "prompt"),
            { ValueKind: JsonValueKind.Array } a when a.GetArrayLength() == 1 && a[0].ValueKind == JsonValueKind.Array => Ids(a[0], "prompt[0]"),
            { ValueKind: JsonValueKind.Array } => throw RequestError.Invalid("prompt", "only one prompt per request is supported"),
            _ => throw RequestError.Invalid("prompt", "must be a string, a list of token ids, or a list of one of those"),
        };
        // The legacy API's logprobs is the number of alternatives; absent means none reported.
        int? top = r.Int("logprobs");
        var request = new GenerationRequest(prompt, Sampling(r, model, prompt.Length, r.Int("max_tokens") ?? 16, top ?? 0))
        {
            Constraint = ResponseFormat.Parse(r, ToolChoice.NoTools, model),
        };
        model.Limits.Check(request, "prompt");
        return new Call(request, top is not null, Math.Max(top ?? 0, 0));
    }

    static int[] Ids(JsonElement array, string param) =>
        array.EnumerateArray()
            .Select((e, i) => e.TryGetInt32(out int id) ? id : throw RequestError.Invalid($"{param}[{i}]", "must be an integer token id"))
            .ToArray();

    /// <summary>The request's sampling over the model's defaults; a chat reply may run to the end of the context by default.</summary>
    static SamplingParams Sampling(OpenAiRequest r, ServedModel model, int promptLength, int? maxTokens, int topLogprobs)
    {
        var defaults = model.DefaultSampling;
        // OpenAI-style clients (and vLLM) send top_k -1 for "off", which is 0 here.
        int? topK = r.Int("top_k") is { } k ? (k == -1 ? 0 : k) : null;
        return defaults with
        {
            Temperature = r.Number("temperature") ?? defaults.Temperature,
            TopP = r.Number("top_p") ?? defaults.TopP,
            TopK = topK ?? defaults.TopK,
            MinP = r.Number("min_p") ?? defaults.MinP,
            RepetitionPenalty = r.Number("repetition_penalty") ?? defaults.RepetitionPenalty,
            PresencePenalty = r.Number("presence_penalty") ?? defaults.PresencePenalty,
            FrequencyPenalty = r.Number("frequency_penalty") ?? defaults.FrequencyPenalty,
            Seed = r.Integer("seed") is { } seed ? unchecked((ulong)seed) : null,
            MaxTokens = maxTokens ?? Math.Max(1, model.Limits.ContextWindow - promptLength),
            Stop = r.Strings("stop"),
            IgnoreEos = r.Bool("ignore_eos") ?? false,
            Logprobs = topLogprobs,
        };
    }
}
