using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Tokenization;
using Proto = Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>From the public API's messages to the cluster's wire types, refusing what the model cannot do.</summary>
public static class RequestMapping
{
    public const int DefaultMaxTokens = 256;

    /// <summary>
    /// Sampling settings with the model's generation_config.json defaults for what the request leaves unset, as
    /// vLLM does; every problem names its field under <paramref name="prefix"/>.
    /// </summary>
    public static SamplingWire ToWire(this Proto.SamplingParams? p, ServedModel model, string prefix = "sampling.")
    {
        p ??= new Proto.SamplingParams();
        var defaults = model.Store.Generation;
        var wire = new SamplingWire
        {
            Temperature = p.HasTemperature ? p.Temperature : defaults.Temperature ?? 1.0,
            TopP = p.HasTopP ? p.TopP : defaults.TopP ?? 1.0,
            TopK = p.HasTopK ? p.TopK : defaults.TopK ?? 0,
            MinP = p.HasMinP ? p.MinP : defaults.MinP ?? 0,
            RepetitionPenalty = p.HasRepetitionPenalty ? p.RepetitionPenalty : defaults.RepetitionPenalty ?? 1.0,
            PresencePenalty = p.HasPresencePenalty ? p.PresencePenalty : 0,
            FrequencyPenalty = p.HasFrequencyPenalty ? p.FrequencyPenalty : 0,
            Seed = p.HasSeed ? p.Seed : null,
            MaxTokens = p.HasMaxTokens ? p.MaxTokens : DefaultMaxTokens,
            Stop = [.. p.Stop],
            StopTokenIds = [.. p.StopTokenIds],
            IgnoreEos = p.IgnoreEos,
            Logprobs = p.Logprobs,
        };
        Check(wire, model, prefix);
        return wire;
    }

    public static void Check(SamplingWire wire, ServedModel model, string prefix)
    {
        if (model.SamplingProblem(wire) is { } problem) throw ApiErrors.Invalid(prefix + problem.Field, problem.Message);
    }

    public static IReadOnlyList<ChatMessage> ToChatMessages(this IEnumerable<Proto.Message> messages, string field = "messages")
    {
        var result = new List<ChatMessage>();
        int i = 0;
        foreach (var m in messages)
        {
            if (!ChatMessages.Roles.Contains(m.Role))
                throw ApiErrors.Invalid($"{field}[{i}].role", $"'{m.Role}' is not one of {string.Join(", ", ChatMessages.Roles)}");
            result.Add(new ChatMessage(m.Role, m.Content));
            i++;
        }
        if (result.Count == 0) throw ApiErrors.Invalid(field, "must not be empty");
        return result;
    }

    public static Proto.Token ToProto(this TokenWire t)
    {
        var token = new Proto.Token { Id = t.Id, Text = t.Text, Logprob = t.Logprob };
        token.Top.AddRange(t.Top.Select(a => new Proto.TopLogprob { Id = a.Id, Logprob = a.Logprob }));
        return token;
    }

    public static Proto.Usage? ToProto(this UsageWire? u) => u is null ? null : new Proto.Usage
    {
        PromptTokens = u.PromptTokens,
        CachedPromptTokens = u.CachedPromptTokens,
        CompletionTokens = u.CompletionTokens,
    };
}
