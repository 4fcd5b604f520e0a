using System.Text;
using System.Text.Json;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// OpenAI-compatible HTTP: /v1/chat/completions, /v1/completions (server-sent events ending with
/// <c>data: [DONE]</c>, or one JSON body) and /v1/models. Requests are validated field by field and refused with
/// OpenAI's error object; stateless clients that resend a whole conversation reuse its KV cache through the
/// engine's prefix cache.
/// </summary>
public static class OpenAiEndpoints
{
    public static IEndpointRouteBuilder MapOpenAi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/models", (ServedModel model) => Results.Json(new { @object = "list", data = new[] { ModelCard(model) } }));
        app.MapGet("/v1/models/{id}", (string id, ServedModel model) => id == model.Name
            ? Results.Json(ModelCard(model))
            : Results.Json(Error($"model '{id}' does not exist", "id", "model_not_found"), statusCode: 404));
        app.MapPost("/v1/chat/completions", (HttpContext http) => Handle(http, chat: true));
        app.MapPost("/v1/completions", (HttpContext http) => Handle(http, chat: false));
        return app;
    }

    static object ModelCard(ServedModel model) => new
    {
        id = model.Name,
        @object = "model",
        created = 0,
        owned_by = "qwen3cluster",
        max_model_len = model.Store.Scheduler.ContextWindow,
    };

    static object Error(string message, string? param, string? code) =>
        new { error = new { message, type = "invalid_request_error", param, code } };

    static async Task Handle(HttpContext http, bool chat)
    {
        var model = http.RequestServices.GetRequiredService<ServedModel>();
        try
        {
            using var body = await ReadBodyAsync(http);
            var request = new OpenAiRequest(body.RootElement);
            string name = request.String("model") ?? model.Name;
            if (name != model.Name)
                throw new OpenAiException(404, "invalid_request_error", $"model: '{name}' does not exist; models: {model.Name}", "model", "model_not_found");
            if (request.Integer("n", 1, 128) is > 1) throw OpenAiException.Invalid("n", "only 1 choice per request is supported");
            if (request.Integer("best_of", 1, 128) is > 1) throw OpenAiException.Invalid("best_of", "only 1 is supported");
            var call = chat ? ChatCall(request, model) : CompletionCall(request, model);
            var events = model.ReplicaFor(call.Prompt).Generate(new GenerateCommand(call.Prompt, call.Sampling), http.RequestAborted);
            var writer = new OpenAiResponseWriter(http, model, call, chat);
            if (request.Bool("stream") == true)
            {
                bool usage = request.Get("stream_options") is { ValueKind: JsonValueKind.Object } o
                    && o.TryGetProperty("include_usage", out var u) && u.ValueKind == JsonValueKind.True;
                await writer.StreamAsync(events, usage, http.RequestAborted);
            }
            else await writer.WholeAsync(events, http.RequestAborted);
        }
        catch (OpenAiException e) when (!http.Response.HasStarted)
        {
            await OpenAiErrors.Write(http, e);
        }
        catch (RpcException e) when (!http.Response.HasStarted)
        {
            int status = e.StatusCode == StatusCode.NotFound ? 404 : 400;
            await OpenAiErrors.Write(http, status, "invalid_request_error", e.Status.Detail, param: e.Status.Detail.Split(':')[0]);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
        }
    }

    static async Task<JsonDocument> ReadBodyAsync(HttpContext http)
    {
        if (http.Request.ContentType is not { } type || !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw new OpenAiException(StatusCodes.Status415UnsupportedMediaType, "invalid_request_error",
                $"Content-Type must be application/json, got '{http.Request.ContentType}'", null);
        try
        {
            using var buffer = new MemoryStream();
            await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
            var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
            if (!System.Text.Unicode.Utf8.IsValid(bytes.Span))
                throw new OpenAiException(400, "invalid_request_error", "The body is not valid JSON: it is not valid UTF-8.", null);
            var body = JsonDocument.Parse(bytes);
            if (body.RootElement.ValueKind != JsonValueKind.Object) throw new OpenAiException(400, "invalid_request_error", "The body must be a JSON object.", null);
            return body;
        }
        catch (JsonException e)
        {
            throw new OpenAiException(400, "invalid_request_error", $"The body is not valid JSON: {e.Message}", null);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new OpenAiException(413, "invalid_request_error", "The request body is too large.", null);
        }
    }

    /// <summary>What a request asks for once parsed: prompt ids, sampling, and how to report logprobs.</summary>
    public sealed record Call(int[] Prompt, SamplingWire Sampling, bool Logprobs, int TopLogprobs);

    static Call ChatCall(OpenAiRequest r, ServedModel model)
    {
        if (r.Get("messages") is not { } messages) throw OpenAiException.Invalid("messages", "is required");
        IReadOnlyList<ChatMessage> parsed;
        try
        {
            parsed = ChatMessages.Parse(messages);
        }
        catch (FormatException e)
        {
            string param = e.Message.Split(':')[0];
            throw new OpenAiException(400, "invalid_request_error", e.Message, param);
        }
        if (parsed.Count == 0) throw OpenAiException.Invalid("messages", "must not be empty");
        bool? thinking = null;
        if (r.Get("chat_template_kwargs") is { } kwargs)
        {
            if (kwargs.ValueKind != JsonValueKind.Object) throw OpenAiException.Invalid("chat_template_kwargs", "must be an object");
            if (kwargs.TryGetProperty("enable_thinking", out var t))
                thinking = t.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => throw OpenAiException.Invalid("chat_template_kwargs.enable_thinking", "must be true or false"),
                };
        }
        var prompt = ChatPrompt.Render(Tokenizer(model, "messages"), parsed, thinking);
        bool logprobs = r.Bool("logprobs") ?? false;
        int top = (int)(r.Integer("top_logprobs", 0, 20) ?? 0);
        if (top > 0 && !logprobs) throw OpenAiException.Invalid("top_logprobs", "requires logprobs: true");
        long? max = r.Integer("max_completion_tokens", 1, int.MaxValue) ?? r.Integer("max_tokens", 1, int.MaxValue);
        return new Call(prompt, Sampling(r, model, prompt.Length, max, top, "messages"), logprobs, top);
    }

    static Call CompletionCall(OpenAiRequest r, ServedModel model)
    {
        if (r.Bool("echo") == true) throw OpenAiException.Invalid("echo", "is not supported");
        if (r.String("suffix") is { Length: > 0 }) throw OpenAiException.Invalid("suffix", "is not supported");
        int[] prompt = r.Get("prompt") switch
        {
            null => throw OpenAiException.Invalid("prompt", "is required"),
            { ValueKind: JsonValueKind.String } s => Tokenizer(model, "prompt").Encode(s.GetString()!),
            { ValueKind: JsonValueKind.Array } a when a.GetArrayLength() == 1 && a[0].ValueKind == JsonValueKind.String =>
                Tokenizer(model, "prompt").Encode(a[0].GetString()!),
            { ValueKind: JsonValueKind.Array } a when a.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number) => Ids(a, "prompt", model),
            { ValueKind: JsonValueKind.Array } a when a.GetArrayLength() == 1 && a[0].ValueKind == JsonValueKind.Array => Ids(a[0], "prompt[0]", model),
            { ValueKind: JsonValueKind.Array } => throw OpenAiException.Invalid("prompt", "only one prompt per request is supported"),
            _ => throw OpenAiException.Invalid("prompt", "must be a string, a list of token ids, or a list of one of those"),
        };
        if (prompt.Length == 0) throw OpenAiException.Invalid("prompt", "must not be empty");
        int top = (int)(r.Integer("logprobs", 0, 20) ?? -1);
        return new Call(prompt, Sampling(r, model, prompt.Length, r.Integer("max_tokens", 1, int.MaxValue) ?? 16, Math.Max(top, 0), "prompt"),
            top >= 0, Math.Max(top, 0));
    }

    static int[] Ids(JsonElement array, string param, ServedModel model)
    {
        var ids = array.EnumerateArray()
            .Select((e, i) => e.TryGetInt32(out int id) ? id : throw OpenAiException.Invalid($"{param}[{i}]", "must be an integer token id"))
            .ToArray();
        int unknown = model.FirstUnknownId(ids);
        return unknown < 0 ? ids : throw OpenAiException.Invalid($"{param}[{unknown}]", $"must be a token id in {model.VocabularyRange}");
    }

    static Qwen3Tokenizer Tokenizer(ServedModel model, string param) =>
        model.Store.Tokenizer ?? throw OpenAiException.Invalid(param, $"model {model.Name} has no tokenizer.json: send token ids");

    static SamplingWire Sampling(OpenAiRequest r, ServedModel model, int promptLength, long? maxTokens, int topLogprobs, string promptParam)
    {
        var defaults = model.Store.Generation;
        int context = model.Store.Scheduler.ContextWindow;
        if (promptLength >= context)
            throw OpenAiException.Invalid(promptParam, $"the prompt has {promptLength} tokens; the context window is {context}");
        long? topK = r.Integer("top_k", -1, int.MaxValue);
        var stop = r.Strings("stop");
        var wire = new SamplingWire
        {
            Temperature = r.Number("temperature", 0, 100) ?? defaults.Temperature ?? 1.0,
            TopP = r.Number("top_p", 0, 1, minExclusive: true) ?? defaults.TopP ?? 1.0,
            TopK = topK is { } k ? (int)Math.Max(k, 0) : defaults.TopK ?? 0,
            MinP = r.Number("min_p", 0, 1) ?? defaults.MinP ?? 0,
            RepetitionPenalty = r.Number("repetition_penalty", 0, 10, minExclusive: true) ?? defaults.RepetitionPenalty ?? 1.0,
            PresencePenalty = r.Number("presence_penalty", -2, 2) ?? 0,
            FrequencyPenalty = r.Number("frequency_penalty", -2, 2) ?? 0,
            Seed = r.Integer("seed", long.MinValue, long.MaxValue) is { } seed ? unchecked((ulong)seed) : null,
            MaxTokens = (int)Math.Min(maxTokens ?? context - promptLength, int.MaxValue),
            Stop = stop,
            IgnoreEos = r.Bool("ignore_eos") ?? false,
            Logprobs = topLogprobs,
        };
        if (model.SamplingProblem(wire) is { } problem)
            throw OpenAiException.Invalid(problem.Field == "max_tokens" && r.Has("max_completion_tokens") ? "max_completion_tokens" : problem.Field,
                problem.Message);
        return wire;
    }
}
