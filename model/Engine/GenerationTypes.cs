using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Model.Engine;

/// <summary>What to generate: a prompt of token ids and how to sample, checked once by <see cref="RequestLimits"/> where it arrived.</summary>
public sealed record GenerationRequest(IReadOnlyList<int> PromptTokens, SamplingParams Sampling)
{
    /// <summary>Keep this sequence's KV blocks after it finishes, under this key, so a later request can resume it.</summary>
    public string? ParkAs { get; init; }
    /// <summary>Resume from the blocks parked under this key (the prompt must extend the parked tokens).</summary>
    public string? ResumeFrom { get; init; }
    /// <summary>The language the output is held to (a JSON Schema, a regex, a choice, tool calls), or null for free text.</summary>
    public OutputConstraint? Constraint { get; init; }
}

/// <summary>One generated token: its id, its own text, its log-probability and the top alternatives.</summary>
public sealed record GeneratedToken(int Id, string Text, float Logprob, IReadOnlyList<TokenLogprob> Top);

public sealed record GenerationUsage(int PromptTokens, int CachedPromptTokens, int CompletionTokens);

/// <summary>
/// A streamed piece of a generation: new tokens and the text they release (text can trail tokens while a stop
/// string might still be forming). The last update carries the finish reason and usage, or an error alone.
/// </summary>
public sealed record GenerationUpdate(IReadOnlyList<GeneratedToken> Tokens, string Text, string? FinishReason = null,
    GenerationUsage? Usage = null, RequestError? Error = null)
{
    public bool IsFinal => FinishReason is not null;

    public static GenerationUpdate Failed(RequestError error) => new([], "", Error: error);
}

public static class FinishReasons
{
    public const string Stop = "stop";
    public const string Length = "length";
}
