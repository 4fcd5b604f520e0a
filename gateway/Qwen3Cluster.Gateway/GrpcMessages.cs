using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Model.Tokenization;
using Proto = Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>Between the public gRPC messages and the engine's records.</summary>
public static class GrpcMessages
{
    /// <summary>
    /// The request's sampling over <paramref name="defaults"/> (generation_config.json's) for what it leaves unset;
    /// checked afterwards, with the rest of the request, by <see cref="RequestLimits"/>.
    /// </summary>
    public static SamplingParams ToSampling(this Proto.SamplingParams? p, SamplingParams defaults)
    {
        if (p is null) return defaults;
        return defaults with
        {
            Temperature = p.HasTemperature ? p.Temperature : defaults.Temperature,
            TopP = p.HasTopP ? p.TopP : defaults.TopP,
            TopK = p.HasTopK ? p.TopK : defaults.TopK,
            MinP = p.HasMinP ? p.MinP : defaults.MinP,
            RepetitionPenalty = p.HasRepetitionPenalty ? p.RepetitionPenalty : defaults.RepetitionPenalty,
            PresencePenalty = p.HasPresencePenalty ? p.PresencePenalty : defaults.PresencePenalty,
            FrequencyPenalty = p.HasFrequencyPenalty ? p.FrequencyPenalty : defaults.FrequencyPenalty,
            Seed = p.HasSeed ? p.Seed : defaults.Seed,
            MaxTokens = p.HasMaxTokens ? p.MaxTokens : defaults.MaxTokens,
            Stop = [.. p.Stop],
            StopTokenIds = [.. p.StopTokenIds],
            IgnoreEos = p.IgnoreEos,
            Logprobs = p.Logprobs,
        };
    }

    /// <summary>The prefix under which a gRPC request's sampling fields are named.</summary>
    public static string SamplingField(string field) => "sampling." + field;

    /// <summary>A request's constraint, checked against the model (a refusal names <c>constraint.*</c>), or null when unset.</summary>
    public static OutputConstraint? ToConstraint(this Proto.OutputConstraint? c, ServedModel model)
    {
        if (c is null || c.KindCase == Proto.OutputConstraint.KindOneofCase.None) return null;
        var (constraint, field) = c.KindCase switch
        {
            Proto.OutputConstraint.KindOneofCase.JsonSchema => (new OutputConstraint(ConstraintKind.JsonSchema, c.JsonSchema), "constraint.json_schema"),
            Proto.OutputConstraint.KindOneofCase.JsonObject when c.JsonObject => (new OutputConstraint(ConstraintKind.JsonSchema, ResponseFormat.AnyObject), "constraint.json_object"),
            Proto.OutputConstraint.KindOneofCase.JsonObject => (null, ""),
            Proto.OutputConstraint.KindOneofCase.Regex => (new OutputConstraint(ConstraintKind.Regex, c.Regex), "constraint.regex"),
            _ => (new OutputConstraint(ConstraintKind.Choice, System.Text.Json.JsonSerializer.Serialize(c.Choice.Choices)), "constraint.choice"),
        };
        if (constraint is null) return null;
        ResponseFormat.Check(constraint, field, model);
        return constraint;
    }

    public static IReadOnlyList<ChatMessage> ToChatMessages(this IEnumerable<Proto.Message> messages, string field = "messages")
    {
        var result = new List<ChatMessage>();
        int i = 0;
        foreach (var m in messages)
        {
            if (!ChatMessages.Roles.Contains(m.Role))
                throw RequestError.Invalid($"{field}[{i}].role", $"'{m.Role}' is not one of {string.Join(", ", ChatMessages.Roles)}");
            var calls = m.ToolCalls.Select((c, j) =>
            {
                string at = $"{field}[{i}].tool_calls[{j}]";
                if (c.Name.Length == 0) throw RequestError.Invalid($"{at}.name", "is required");
                try
                {
                    using var arguments = System.Text.Json.JsonDocument.Parse(c.ArgumentsJson.Length == 0 ? "{}" : c.ArgumentsJson);
                    if (arguments.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object) throw RequestError.Invalid($"{at}.arguments_json", "must be a JSON object");
                }
                catch (System.Text.Json.JsonException e)
                {
                    throw RequestError.Invalid($"{at}.arguments_json", $"is not valid JSON: {e.Message}");
                }
                return ChatToolCall.WithArgumentsText(c.Name, c.ArgumentsJson.Length == 0 ? "{}" : c.ArgumentsJson);
            }).ToList();
            result.Add(new ChatMessage(m.Role, m.Content, ToolCalls: calls.Count > 0 ? calls : null));
            i++;
        }
        if (result.Count == 0) throw RequestError.Invalid(field, "must not be empty");
        return result;
    }

    /// <summary>A chat request's tools and tool_choice, checked as the OpenAI edge checks them (refusals name the gRPC fields).</summary>
    public static ToolChoice ToToolChoice(this IEnumerable<Proto.Tool> tools, string choice)
    {
        var list = new System.Text.Json.Nodes.JsonArray();
        int i = 0;
        foreach (var tool in tools)
        {
            System.Text.Json.Nodes.JsonNode? parameters = null;
            if (tool.ParametersJson.Length > 0)
            {
                try
                {
                    parameters = System.Text.Json.Nodes.JsonNode.Parse(tool.ParametersJson);
                }
                catch (System.Text.Json.JsonException e)
                {
                    throw RequestError.Invalid($"tools[{i}].parameters_json", $"is not valid JSON: {e.Message}");
                }
            }
            list.Add(new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "function",
                ["function"] = new System.Text.Json.Nodes.JsonObject { ["name"] = tool.Name, ["description"] = tool.Description, ["parameters"] = parameters },
            });
            i++;
        }
        System.Text.Json.Nodes.JsonNode? toolChoice = choice switch
        {
            "" => null,
            ToolChoice.None or ToolChoice.Auto or ToolChoice.Required => choice,
            _ => new System.Text.Json.Nodes.JsonObject { ["type"] = "function", ["function"] = new System.Text.Json.Nodes.JsonObject { ["name"] = choice } },
        };
        try
        {
            using var toolsJson = System.Text.Json.JsonDocument.Parse(list.ToJsonString());
            using var choiceJson = toolChoice is null ? null : System.Text.Json.JsonDocument.Parse(toolChoice.ToJsonString());
            return ToolChoice.Parse(i == 0 ? null : toolsJson.RootElement, choiceJson?.RootElement);
        }
        catch (RequestError e) when (e.Field is { } f)
        {
            // OpenAI's nesting (tools[i].function.name) is flat here (tools[i].name); a named choice is the field itself.
            throw new RequestError(e.Kind, f.Replace(".function.", ".").Replace(".parameters", ".parameters_json").Replace("tool_choice.function.name", "tool_choice"), e.Reason);
        }
    }

    public static Proto.GenerateResponse ToResponse(this GenerationUpdate update)
    {
        var response = new Proto.GenerateResponse { Text = update.Text, FinishReason = update.FinishReason ?? "" };
        if (update.Usage is { } u)
            response.Usage = new Proto.Usage { PromptTokens = u.PromptTokens, CachedPromptTokens = u.CachedPromptTokens, CompletionTokens = u.CompletionTokens };
        foreach (var t in update.Tokens)
        {
            var token = new Proto.Token { Id = t.Id, Text = t.Text, Logprob = t.Logprob };
            token.Top.AddRange(t.Top.Select(a => new Proto.TopLogprob { Id = a.Id, Logprob = a.Logprob }));
            response.Tokens.Add(token);
        }
        return response;
    }
}
