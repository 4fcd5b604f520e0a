using Qwen3Cluster.Model.Config;

namespace Qwen3Cluster.Model.Sampling;

/// <summary>
/// How to pick each next token and when to stop: the one sampling type, resolved where a request arrives (its
/// unset fields from <see cref="Defaults"/>), checked there by <c>RequestLimits</c>, and carried as is to the
/// sampler. Temperature 0 is greedy. TopK 0 is off; TopP 1 and MinP 0 are off; penalties 1 (repetition) and 0
/// (presence, frequency) are off.
/// </summary>
public sealed record SamplingParams
{
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

    /// <summary>
    /// What a request that sets nothing gets: the checkpoint's generation_config.json sampling defaults where it has
    /// them (as vLLM and transformers do), this type's own otherwise. Every edge starts from these.
    /// </summary>
    public static SamplingParams Defaults(GenerationConfig generation)
    {
        var plain = new SamplingParams();
        return plain with
        {
            Temperature = generation.Temperature ?? plain.Temperature,
            TopP = generation.TopP ?? plain.TopP,
            TopK = generation.TopK ?? plain.TopK,
            MinP = generation.MinP ?? plain.MinP,
            RepetitionPenalty = generation.RepetitionPenalty ?? plain.RepetitionPenalty,
        };
    }
}
