using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Tests.Support;

/// <summary>Runs requests through a <see cref="GenerationEngine"/> and collects what they stream.</summary>
public static class EngineRunner
{
    public sealed record Result(IReadOnlyList<GeneratedToken> Tokens, string Text, string FinishReason, GenerationUsage Usage)
    {
        public int[] Ids => Tokens.Select(t => t.Id).ToArray();
    }

    public static async Task<Result> RunAsync(GenerationEngine engine, GenerationRequest request, CancellationToken ct = default)
    {
        var tokens = new List<GeneratedToken>();
        var text = new System.Text.StringBuilder();
        string? finish = null;
        GenerationUsage? usage = null;
        await foreach (var update in engine.GenerateAsync(request, ct))
        {
            tokens.AddRange(update.Tokens);
            text.Append(update.Text);
            finish = update.FinishReason ?? finish;
            usage = update.Usage ?? usage;
        }
        return new Result(tokens, text.ToString(), finish!, usage!);
    }

    public static GenerationRequest Greedy(IReadOnlyList<int> prompt, int maxTokens, int logprobs = 0) =>
        new(prompt, new SamplingParams { Temperature = 0, MaxTokens = maxTokens, Logprobs = logprobs, IgnoreEos = true });
}
