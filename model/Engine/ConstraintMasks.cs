using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// Between the stages and the sampler: each constrained sequence's row of the step's logits has every token its
/// constraint does not allow set to -infinity (so greedy, sampling and the reported log-probabilities all see only
/// allowed tokens, as in vLLM). Rows without a constraint are not touched, and a step without any costs nothing.
/// </summary>
public sealed class ConstraintMasks(IReadOnlyCollection<int> eosTokenIds, int contextWindow)
{
    public void Apply(Tensor logits, IReadOnlyList<ScheduledSlice> rows)
    {
        if (!rows.Any(r => r.Sequence.Constraint is not null)) return;
        bool inPlace = logits.device_type == DeviceType.CPU && logits.dtype == ScalarType.Float32 && logits.is_contiguous();
        var host = inPlace ? logits : logits.to(ScalarType.Float32, CPU).contiguous();
        int width = (int)host.shape[1];
        var values = MemoryMarshal.Cast<byte, float>(host.bytes);
        for (int i = 0; i < rows.Count; i++)
        {
            var sequence = rows[i].Sequence;
            if (sequence.Constraint is not { } constraint) continue;
            long started = Stopwatch.GetTimestamp();
            var p = sequence.Sampling;
            // Tokens that may follow this one: the budget a complete match must fit in.
            int remaining = Math.Min(p.MaxTokens - sequence.OutputLength, contextWindow - sequence.Tokens.Count) - 1;
            constraint.Apply(values.Slice(i * width, width), remaining, Ends(p));
            EngineMetrics.ConstraintMaskSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
        if (!inPlace)
        {
            logits.copy_(host);
            host.Dispose();
        }
    }

    IReadOnlyCollection<int> Ends(Sampling.SamplingParams p) =>
        p.IgnoreEos ? p.StopTokenIds : p.StopTokenIds.Count == 0 ? eosTokenIds : [.. eosTokenIds, .. p.StopTokenIds];
}
