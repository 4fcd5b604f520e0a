using Grpc.Core;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The Inference gRPC service: resolves and checks a request once, hands it to the model's replica (or the session's
/// turn), streams the updates back. Refusals are <see cref="RequestError"/>s, made statuses by <see cref="GrpcErrors"/>.
/// </summary>
public sealed class InferenceService(ServedModel model, IGrainFactory grains) : Inference.InferenceBase
{
    public override async Task Generate(GenerateRequest request, IServerStreamWriter<GenerateResponse> responses, ServerCallContext context)
    {
        long arrived = System.Diagnostics.Stopwatch.GetTimestamp();
        model.Check(request.Model);
        var (prompt, field) = request.PromptCase switch
        {
            GenerateRequest.PromptOneofCase.Text when request.Text.Length > 0 => (model.Tokenizer("text").Encode(request.Text), "text"),
            GenerateRequest.PromptOneofCase.TokenIds => (request.TokenIds.Ids.ToArray(), "token_ids"),
            _ => throw RequestError.Invalid("text", "a prompt is required: set text or token_ids"),
        };
        var generation = new GenerationRequest(prompt, request.Sampling.ToSampling(model.DefaultSampling))
        {
            Constraint = request.Constraint.ToConstraint(model),
        };
        model.Limits.Check(generation, field, samplingField: GrpcMessages.SamplingField);
        using var call = new CallDeadline(context);
        using var activity = RequestMetrics.StartRequest(model.Name, null);
        await StreamAsync(model.ReplicaFor(prompt).Generate(generation, call.Token).Timed(arrived, activity), responses, call);
    }

    public override async Task Chat(ChatRequest request, IServerStreamWriter<GenerateResponse> responses, ServerCallContext context)
    {
        long arrived = System.Diagnostics.Stopwatch.GetTimestamp();
        model.Check(request.Model);
        var messages = request.Messages.ToChatMessages();
        var sampling = request.Sampling.ToSampling(model.DefaultSampling);
        var tools = request.Tools.ToToolChoice(request.ToolChoice);
        var constraint = request.Constraint.ToConstraint(model);
        if (tools.Calls() is { } calls)
        {
            if (constraint is not null) throw RequestError.Invalid("constraint", $"cannot be combined with tool_choice '{request.ToolChoice}'");
            ResponseFormat.Check(calls, "tool_choice", model);
            constraint = calls;
        }
        // A constrained reply (a forced call among them) starts at once, unless thinking is asked for.
        bool? thinking = request.HasEnableThinking ? request.EnableThinking : constraint is null ? null : false;
        using var call = new CallDeadline(context);
        using var activity = RequestMetrics.StartRequest(model.Name, request.SessionId);
        if (request.SessionId.Length == 0)
        {
            var generation = new GenerationRequest(model.Chat(messages, thinking, tools: tools), sampling) { Constraint = constraint };
            model.Limits.Check(generation, "messages", "messages", GrpcMessages.SamplingField);
            await StreamAsync(model.ReplicaFor(generation.PromptTokens).Generate(generation, call.Token).Timed(arrived, activity), responses, call, tools);
            return;
        }
        SessionsService.CheckId(request.SessionId);
        model.Template("messages");
        var turn = new SessionTurns(grains).RunAsync(request.SessionId, Caller.Owner(context.GetHttpContext().User), history =>
        {
            var prompt = model.ContinueChat(history, messages, thinking, tools: tools);
            model.Limits.Check(new GenerationRequest(prompt, sampling), "messages", "messages", GrpcMessages.SamplingField);
            return prompt;
        }, sampling, call.Token, constraint);
        await StreamAsync(turn.Timed(arrived, activity), responses, call, tools);
    }

    public override Task<TokenizeResponse> Tokenize(TokenizeRequest request, ServerCallContext context)
    {
        model.Check(request.Model);
        if ((request.Text.Length > 0) == (request.Messages.Count > 0))
            throw RequestError.Invalid("text", "give exactly one of text or messages");
        var tokenizer = model.Tokenizer(request.Text.Length > 0 ? "text" : "messages");
        string text = request.Text.Length > 0
            ? request.Text
            : model.Template("messages").Render(request.Messages.ToChatMessages(),
                addGenerationPrompt: !request.HasAddGenerationPrompt || request.AddGenerationPrompt,
                enableThinking: request.HasEnableThinking ? request.EnableThinking : null);
        var response = new TokenizeResponse();
        response.Ids.AddRange(tokenizer.Encode(text));
        return Task.FromResult(response);
    }

    public override Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var d = model.Deployment.Describe();
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

    /// <summary>Forwards updates until the last; an update with an error ends the call with its status.</summary>
    /// <summary>With <paramref name="tools"/> that read calls, the reply's calls come out as <c>tool_calls</c> (<see cref="GrpcToolCalls"/>).</summary>
    static async Task StreamAsync(IAsyncEnumerable<GenerationUpdate> updates, IServerStreamWriter<GenerateResponse> responses, CallDeadline call,
        ToolChoice? tools = null)
    {
        try
        {
            if (tools is { ParsesCalls: true })
            {
                await foreach (var response in new GrpcToolCalls(tools).Map(updates).WithCancellation(call.Token))
                    await responses.WriteAsync(response, call.Token);
                return;
            }
            await foreach (var update in updates.WithCancellation(call.Token))
            {
                if (update.Error is { } error) throw error;
                await responses.WriteAsync(update.ToResponse(), call.Token);
            }
        }
        catch (Exception) when (call.Reached)
        {
            throw CallDeadline.Exceeded();
        }
    }
}
