namespace Qwen3Cluster.Model.Sampling;

/// <summary>A log-probability of one candidate token.</summary>
public readonly record struct TokenLogprob(int Id, float Logprob);

/// <summary>The chosen token, its log-probability under the model, and the model's top alternatives.</summary>
public sealed record SampledToken(int Id, float Logprob, IReadOnlyList<TokenLogprob> Top);
