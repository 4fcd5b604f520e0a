using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Grains;

/// <summary>Between the engine's records and their wire forms.</summary>
public static class WireMapping
{
    public static ForwardContext ToContext(this StageStep step) =>
        new(step.Slices.Select(s => new SequenceSlice(s.StartPosition, s.QueryLength, s.BlockTable)).ToArray(), step.BlockSize, step.LogitRows);

    public static SliceWire[] ToWire(this ForwardContext context) =>
        context.Slices.Select(s => new SliceWire(s.StartPosition, s.QueryLength, s.BlockTable)).ToArray();

    public static SamplingParams ToParams(this SamplingWire w) => new()
    {
        Temperature = w.Temperature,
        TopP = w.TopP,
        TopK = w.TopK,
        MinP = w.MinP,
        RepetitionPenalty = w.RepetitionPenalty,
        PresencePenalty = w.PresencePenalty,
        FrequencyPenalty = w.FrequencyPenalty,
        Seed = w.Seed,
        MaxTokens = w.MaxTokens,
        Stop = w.Stop,
        StopTokenIds = w.StopTokenIds,
        IgnoreEos = w.IgnoreEos,
        Logprobs = w.Logprobs,
    };

    public static GenerationEvent ToEvent(this GenerationUpdate update) => new(
        update.Tokens.Select(t => new TokenWire(t.Id, t.Text, t.Logprob, t.Top.Select(a => new TopLogprobWire(a.Id, a.Logprob)).ToArray())).ToArray(),
        update.Text,
        update.FinishReason,
        update.Usage is { } u ? new UsageWire(u.PromptTokens, u.CachedPromptTokens, u.CompletionTokens) : null,
        null);
}
