using Qwen3Cluster.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Sampling;

/// <summary>
/// Picks the next token of every row of a step's logits [N, V]. Greedy is argmax; sampling applies penalties,
/// temperature, top-k, top-p and min-p (transformers' order) and draws with the row's own generator.
/// Reported log-probabilities are those of the model's raw distribution (log_softmax of the logits: each logit less
/// the row's log Σ exp), as vLLM reports by default.
/// </summary>
public sealed class Sampler
{
    public IReadOnlyList<SampledToken> Sample(Tensor logits, IReadOnlyList<(SamplingParams Params, SamplerState State)> rows)
    {
        if (rows.Count == 0) return [];
        using var scope = NewDisposeScope();
        if (logits.size(0) != rows.Count)
            throw new ArgumentException($"{logits.size(0)} logit rows for {rows.Count} sequences.");
        var f32 = logits.to(ScalarType.Float32);                                     // [N, V]
        var normalizersClock = KernelProfile.Measure("sample.normalizers");
        var (greedy, logSumExp) = TensorKernels.For(f32.device).Normalizers(f32);     // [N], [N]
        normalizersClock.Dispose();
        var chosen = new long[rows.Count];
        for (int i = 0; i < rows.Count; i++)
        {
            var (p, state) = rows[i];
            chosen[i] = p.IsGreedy && !p.HasPenalties ? greedy[i] : SampleRow(f32[i], p, state);
        }
        int topN = rows.Max(r => r.Params.Logprobs);
        var chosenLogits = ChosenLogits(f32, chosen);
        float[] topValues = [];
        long[] topIds = [];
        if (topN > 0)
        {
            var (values, ids) = f32.topk(topN, dim: -1);
            topValues = values.cpu().data<float>().ToArray();
            topIds = ids.cpu().data<long>().ToArray();
        }
        var result = new SampledToken[rows.Count];
        for (int i = 0; i < rows.Count; i++)
        {
            int n = rows[i].Params.Logprobs;
            var top = new TokenLogprob[n];
            for (int j = 0; j < n; j++) top[j] = new TokenLogprob((int)topIds[i * topN + j], topValues[i * topN + j] - logSumExp[i]);
            result[i] = new SampledToken((int)chosen[i], chosenLogits[i] - logSumExp[i], top);
        }
        return result;
    }

    /// <summary>logits[i, chosen[i]]: read in place from a CPU tensor, gathered on any other device.</summary>
    static float[] ChosenLogits(Tensor logits, long[] chosen)
    {
        if (logits.device_type == DeviceType.CPU && logits.is_contiguous())
        {
            long width = logits.size(1);
            var values = logits.data<float>();
            return [.. chosen.Select((c, i) => values[i * width + c])];
        }
        using var index = tensor(chosen, device: logits.device).unsqueeze(-1);
        using var picked = logits.gather(1, index).squeeze(-1).cpu();
        return picked.data<float>().ToArray();
    }

    static long SampleRow(Tensor row, SamplingParams p, SamplerState state)
    {
        var l = row.clone();                                                          // [V]
        ApplyPenalties(l, p, state);
        if (p.IsGreedy) return l.argmax().item<long>();
        l = l / p.Temperature;
        if (p.TopK > 0 && p.TopK < l.shape[0])
        {
            var (topValues, _) = l.topk(p.TopK);
            l = l.masked_fill(l < topValues[-1], double.NegativeInfinity);
        }
        if (p.TopP < 1.0)
        {
            var (sorted, order) = l.sort(-1, descending: false);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            // The most likely token always stays, however small top_p is.
            var remove = (cumulative <= 1 - p.TopP).logical_and(arange(l.shape[0], device: l.device) < l.shape[0] - 1);
            l = l.masked_fill(zeros_like(remove).scatter_(0, order, remove), double.NegativeInfinity);
        }
        var probs = l.softmax(-1);
        if (p.MinP > 0)
        {
            var threshold = probs.max() * p.MinP;
            probs = probs.masked_fill(probs < threshold, 0);
        }
        var noise = empty_like(probs).exponential_(1.0, state.GeneratorFor(probs.device));
        return (probs / noise).argmax().item<long>();
    }

    static void ApplyPenalties(Tensor l, SamplingParams p, SamplerState state)
    {
        if (p.RepetitionPenalty != 1.0 && state.Seen.Count > 0)
        {
            long vocab = l.shape[0];
            var seen = tensor(state.Seen.Where(t => t < vocab).Select(t => (long)t).ToArray(), device: l.device);
            var values = l.index_select(0, seen);
            var penalised = where(values > 0, values / p.RepetitionPenalty, values * p.RepetitionPenalty);
            l.index_copy_(0, seen, penalised);
        }
        if ((p.PresencePenalty != 0 || p.FrequencyPenalty != 0) && state.OutputCounts.Count > 0)
        {
            var ids = tensor(state.OutputCounts.Keys.Select(t => (long)t).ToArray(), device: l.device);
            var counts = tensor(state.OutputCounts.Values.Select(c => (float)c).ToArray(), device: l.device);
            var delta = counts * (float)p.FrequencyPenalty + (float)p.PresencePenalty;
            l.index_add_(0, ids, delta, -1);
        }
    }
}
