using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// What a served model accepts, and the one check of a request against it: the prompt's ids and length and the
/// range of every sampling setting. Each edge (gRPC, HTTP, the CLI) checks what it received here, once; nothing
/// behind it checks again. Refusals are <see cref="RequestError"/>s naming the field as the edge spells it.
/// </summary>
public sealed record RequestLimits(int VocabSize, int ContextWindow)
{
    public const int MaxLogprobs = 20;
    public const int MaxStopStrings = 16;
    public const int MaxStopStringLength = 256;

    /// <param name="promptField">What the edge calls the prompt it received ("token_ids", "text", "prompt", "messages").</param>
    /// <param name="lengthField">What a prompt too long for the context is blamed on (default: "prompt").</param>
    /// <param name="samplingField">The edge's name for a sampling field, given its canonical name ("max_tokens").</param>
    public void Check(GenerationRequest request, string promptField, string lengthField = "prompt", Func<string, string>? samplingField = null)
    {
        var ids = request.PromptTokens;
        if (ids.Count == 0) throw RequestError.Invalid(promptField, "must not be empty");
        for (int i = 0; i < ids.Count; i++)
        {
            if (ids[i] < 0 || ids[i] >= VocabSize)
                throw RequestError.Invalid($"{promptField}[{i}]", $"token {ids[i]} is outside the vocabulary [0, {VocabSize})");
        }

        if (ids.Count >= ContextWindow)
            throw RequestError.Invalid(lengthField, $"the prompt has {ids.Count} tokens; the context window is {ContextWindow}");
        if (Problem(request.Sampling) is (var field, var reason)) throw RequestError.Invalid(samplingField?.Invoke(field) ?? field, reason);
    }

    /// <summary>The first sampling setting out of range (its canonical name and why), or null.</summary>
    (string Field, string Reason)? Problem(SamplingParams p)
    {
        if (double.IsNaN(p.Temperature) || p.Temperature < 0 || p.Temperature > 100) return ("temperature", "must be in [0, 100]");
        if (double.IsNaN(p.TopP) || p.TopP <= 0 || p.TopP > 1) return ("top_p", "must be in (0, 1]");
        if (p.TopK < 0) return ("top_k", "must be >= 0 (0 disables it)");
        if (double.IsNaN(p.MinP) || p.MinP < 0 || p.MinP > 1) return ("min_p", "must be in [0, 1]");
        if (double.IsNaN(p.RepetitionPenalty) || p.RepetitionPenalty <= 0 || p.RepetitionPenalty > 10)
            return ("repetition_penalty", "must be in (0, 10]");
        if (double.IsNaN(p.PresencePenalty) || Math.Abs(p.PresencePenalty) > 2) return ("presence_penalty", "must be in [-2, 2]");
        if (double.IsNaN(p.FrequencyPenalty) || Math.Abs(p.FrequencyPenalty) > 2) return ("frequency_penalty", "must be in [-2, 2]");
        if (p.MaxTokens <= 0) return ("max_tokens", "must be positive");
        if (p.MaxTokens > ContextWindow) return ("max_tokens", $"{p.MaxTokens} exceeds the context window of {ContextWindow} tokens");
        if (p.Logprobs < 0 || p.Logprobs > MaxLogprobs) return ("logprobs", $"must be between 0 and {MaxLogprobs}");
        if (p.Stop.Count > MaxStopStrings) return ("stop", $"at most {MaxStopStrings} stop strings");
        if (p.Stop.Any(string.IsNullOrEmpty)) return ("stop", "stop strings must not be empty");
        if (p.Stop.Any(s => s.Length > MaxStopStringLength)) return ("stop", $"stop strings must be at most {MaxStopStringLength} characters");
        if (p.StopTokenIds.Any(t => t < 0 || t >= VocabSize)) return ("stop_token_ids", $"ids must be in [0, {VocabSize})");
        return null;
    }
}
