using Grpc.Core;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Tokenization;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>The Inference gRPC service: validates, hands the request to the model's grains, streams the events back.</summary>
public sealed class InferenceService(ServedModel model, IGrainFactory grains, Callers callers) : Inference.InferenceBase
{
    public override async Task Generate(GenerateRequest request, IServerStreamWriter<GenerateResponse> responses, ServerCallContext context)
    {
        model.Check(request.Model);
        int[] prompt = request.PromptCase switch
        {
            GenerateRequest.PromptOneofCase.Text when request.Text.Length > 0 => model.Tokenizer.Encode(request.Text),
            GenerateRequest.PromptOneofCase.TokenIds when request.TokenIds.Ids.Count > 0 => model.CheckIds(request.TokenIds.Ids, "token_ids"),
            GenerateRequest.PromptOneofCase.TokenIds => throw ApiErrors.Invalid("token_ids", "must not be empty"),
            _ => throw ApiErrors.Invalid("text", "a prompt is required: set text or token_ids"),
        };
        var sampling = request.Sampling.ToWire(model);
        using var call = new CallDeadline(context);
        var events = model.ReplicaFor(prompt).Generate(new GenerateCommand(prompt, sampling), call.Token);
        await Stream(events, e => Write(responses, e, call.Token), call);
    }

    public override async Task Chat(ChatRequest request, IServerStreamWriter<ChatResponse> responses, ServerCallContext context)
    {
        model.Check(request.Model);
        var messages = request.Messages.ToChatMessages();
        var sampling = request.Sampling.ToWire(model);
        bool? thinking = request.HasEnableThinking ? request.EnableThinking : null;
        using var call = new CallDeadline(context);
        IAsyncEnumerable<GenerationEvent> events;
        if (request.SessionId.Length == 0)
        {
            var prompt = ChatPrompt.Render(model.Tokenizer, messages, thinking);
            events = model.ReplicaFor(prompt).Generate(new GenerateCommand(prompt, sampling), call.Token);
        }
        else
        {
            var tokenizer = model.Tokenizer;
            SessionsService.CheckId(request.SessionId);
            events = new SessionTurns(grains).RunAsync(request.SessionId, callers.Owner(context),
                history => ChatPrompt.Continue(tokenizer, history, messages, thinking), sampling, call.Token);
        }
        await Stream(events, e => Write(responses, e, call.Token), call);
    }

    public override Task<TokenizeResponse> Tokenize(TokenizeRequest request, ServerCallContext context)
    {
        model.Check(request.Model);
        if ((request.Text.Length > 0) == (request.Messages.Count > 0))
            throw ApiErrors.Invalid("text", "give exactly one of text or messages");
        var tokenizer = model.Tokenizer;
        int[] ids;
        if (request.Text.Length > 0) ids = tokenizer.Encode(request.Text);
        else
        {
            string rendered = ChatTemplate.For(tokenizer).Render(request.Messages.ToChatMessages(),
                addGenerationPrompt: !request.HasAddGenerationPrompt || request.AddGenerationPrompt,
                enableThinking: request.HasEnableThinking ? request.EnableThinking : null);
            ids = tokenizer.Encode(rendered);
        }
        var response = new TokenizeResponse();
        response.Ids.AddRange(ids);
        return Task.FromResult(response);
    }

    public override Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var d = model.Store.Describe();
        var response = new ListModelsResponse();
        response.Models.Add(new ModelInfo
        {
            Name = d.Name,
            Architecture = d.Architecture,
            ContextLength = d.ContextLength,
            VocabSize = d.VocabSize,
            Stages = d.Stages,
            ExpertGroups = d.ExpertGroups,
        });
        return Task.FromResult(response);
    }

    /// <summary>Forwards events until the last; an error event becomes the call's status.</summary>
    static async Task Stream(IAsyncEnumerable<GenerationEvent> events, Func<GenerationEvent, Task> write, CallDeadline call)
    {
        try
        {
            await foreach (var e in events.WithCancellation(call.Token))
            {
                if (e.Error is { } error) throw ApiErrors.From(error);
                await write(e);
            }
        }
        catch (Exception) when (call.Reached)
        {
            throw CallDeadline.Exceeded();
        }
    }

    static Task Write(IServerStreamWriter<GenerateResponse> responses, GenerationEvent e, CancellationToken cancellationToken)
    {
        var response = new GenerateResponse { Text = e.Text, FinishReason = e.FinishReason ?? "", Usage = e.Usage.ToProto() };
        response.Tokens.AddRange(e.Tokens.Select(t => t.ToProto()));
        return responses.WriteAsync(response, cancellationToken);
    }

    static Task Write(IServerStreamWriter<ChatResponse> responses, GenerationEvent e, CancellationToken cancellationToken)
    {
        var response = new ChatResponse { Text = e.Text, FinishReason = e.FinishReason ?? "", Usage = e.Usage.ToProto() };
        response.Tokens.AddRange(e.Tokens.Select(t => t.ToProto()));
        return responses.WriteAsync(response, cancellationToken);
    }
}
