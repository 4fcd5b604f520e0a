using System.Text.Json;

namespace Qwen3Cluster.EndToEndTests;

/// <summary>What <c>qwen3 generate --json</c> prints.</summary>
public sealed record GenerateJson(int[] PromptIds, int[] Ids, float[] Logprobs, string Text, string FinishReason)
{
    public static async Task<GenerateJson> RunAsync(string model, int[] promptIds, int maxTokens)
    {
        string output = await Processes.RunQwen3Async("generate", "--model", model, "--prompt-ids", string.Join(',', promptIds),
            "--temperature", "0", "--max-tokens", maxTokens.ToString(), "--logprobs", "3", "--json");
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        var tokens = root.GetProperty("tokens").EnumerateArray().ToArray();
        return new GenerateJson(
            root.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            tokens.Select(t => t.GetProperty("id").GetInt32()).ToArray(),
            tokens.Select(t => t.GetProperty("logprob").GetSingle()).ToArray(),
            root.GetProperty("text").GetString()!,
            root.GetProperty("finish_reason").GetString()!);
    }
}
