namespace Qwen3Cluster.Model.Sampling;

/// <summary>
/// How to pick each next token and when to stop. Temperature 0 is greedy. Zero or negative values mean
/// "off" for TopK; TopP 1 and MinP 0 are off; penalties 1 (repetition) and 0 (presence, frequency) are off.
/// </summary>
public sealed record SamplingParams
{
    public const int MaxLogprobs = 20;
    public const int MaxStopStrings = 16;

    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    public int TopK { get; init; }
    public double MinP { get; init; }
    public double RepetitionPenalty { get; init; } = 1.0;
    public double PresencePenalty { get; init; }
    public double FrequencyPenalty { get; init; }
    public ulong? Seed { get; init; }
    public int MaxTokens { get; init; } = 256;
    public IReadOnlyList<string> Stop { get; init; } = [];
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Ignore the model's end-of-sequence ids (generation_config.json) and run to MaxTokens.</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>How many top alternatives to report with each token's log-probability; 0 reports only the token's own.</summary>
    public int Logprobs { get; init; }

    /// <summary>Temperatures this close to 0 would overflow the scaled logits: they mean greedy, as in vLLM.</summary>
    public const double GreedyBelow = 1e-5;

    public bool IsGreedy => Temperature < GreedyBelow || TopK == 1;
    public bool HasPenalties => RepetitionPenalty != 1.0 || PresencePenalty != 0 || FrequencyPenalty != 0;

    public static SamplingParams Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens };

    /// <summary>Null when valid; otherwise the field at fault and why, in the words an API error uses.</summary>
    public (string Field, string Message)? Validate(int vocabSize)
    {
        if (double.IsNaN(Temperature) || Temperature < 0) return ("temperature", "must be >= 0");
        if (Temperature > 100) return ("temperature", "must be <= 100");
        if (double.IsNaN(TopP) || TopP <= 0 || TopP > 1) return ("top_p", "must be in (0, 1]");
        if (TopK < 0) return ("top_k", "must be >= 0 (0 disables it)");
        if (double.IsNaN(MinP) || MinP < 0 || MinP > 1) return ("min_p", "must be in [0, 1]");
        if (double.IsNaN(RepetitionPenalty) || RepetitionPenalty <= 0 || RepetitionPenalty > 10) return ("repetition_penalty", "must be in (0, 10]");
        if (double.IsNaN(PresencePenalty) || Math.Abs(PresencePenalty) > 2) return ("presence_penalty", "must be in [-2, 2]");
        if (double.IsNaN(FrequencyPenalty) || Math.Abs(FrequencyPenalty) > 2) return ("frequency_penalty", "must be in [-2, 2]");
        if (MaxTokens <= 0) return ("max_tokens", "must be positive");
        if (Logprobs < 0 || Logprobs > MaxLogprobs) return ("logprobs", $"must be between 0 and {MaxLogprobs}");
        if (Stop.Count > MaxStopStrings) return ("stop", $"at most {MaxStopStrings} stop strings");
        if (Stop.Any(string.IsNullOrEmpty)) return ("stop", "stop strings must not be empty");
        if (Stop.Any(s => s.Length > 256)) return ("stop", "stop strings must be at most 256 characters");
        if (StopTokenIds.Any(t => t < 0 || t >= vocabSize)) return ("stop_token_ids", $"ids must be in [0, {vocabSize})");
        return null;
    }
}
