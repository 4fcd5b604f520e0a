using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// After sampling: appends each token, turns it into text, applies the stop rules (end-of-sequence ids,
/// stop token ids, stop strings, a complete constrained match, max tokens, the context limit) and writes the sequence's update.
/// </summary>
public sealed class OutputProcessor(IReadOnlyCollection<int> eosTokenIds, int maxModelLength)
{
    /// <summary>
    /// Returns true when the sequence finished with this token; its last update is written then, and its stream is left
    /// for the engine to complete once it has freed or parked the sequence's cache.
    /// </summary>
    public bool Apply(Sequence sequence, SampledToken sampled)
    {
        sequence.Append(sampled.Id);
        var p = sequence.Sampling;
        string tokenText = sequence.Decoder?.Push(sampled.Id) ?? "";
        var token = new GeneratedToken(sampled.Id, tokenText, sampled.Logprob, sampled.Top);

        string? finish = null;
        bool stopToken = (!p.IgnoreEos && eosTokenIds.Contains(sampled.Id)) || p.StopTokenIds.Contains(sampled.Id);
        var (released, stopString) = sequence.StopFilter.Push(stopToken ? "" : tokenText);
        // A constrained output whose match is complete can take nothing more.
        if (stopToken || stopString || sequence.Constraint?.IsComplete == true) finish = FinishReasons.Stop;
        else if (sequence.OutputLength >= p.MaxTokens || sequence.Tokens.Count >= maxModelLength) finish = FinishReasons.Length;

        if (finish is null)
        {
            sequence.Updates.Writer.TryWrite(new GenerationUpdate([token], released));
            return false;
        }
        if (!stopString)
        {
            released += sequence.StopFilter.Flush();
            if (!stopToken) released += sequence.Decoder?.Flush() ?? "";
        }
        sequence.FinishReason = finish;
        var usage = new GenerationUsage(sequence.PromptLength, sequence.CachedPromptTokens, sequence.OutputLength);
        sequence.Updates.Writer.TryWrite(new GenerationUpdate([token], released, finish, usage));
        return true;
    }
}
