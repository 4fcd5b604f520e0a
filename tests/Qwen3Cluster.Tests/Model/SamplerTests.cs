using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Model;

public sealed class SamplerTests
{
    static readonly Sampler Sampler = new();

    static SampledToken One(float[] logits, SamplingParams p, SamplerState? state = null)
    {
        using var t = tensor(logits).unsqueeze(0);
        if (state is not null) return Sampler.Sample(t, [(p, state)])[0];
        using var fresh = new SamplerState(p.Seed, []);
        return Sampler.Sample(t, [(p, fresh)])[0];
    }

    [Fact]
    public void GreedyPicksTheArgmaxAndReportsRawLogprobs()
    {
        var token = One([1f, 3f, 2f], new SamplingParams { Temperature = 0, Logprobs = 2 });
        double z = Math.Log(Math.Exp(1) + Math.Exp(3) + Math.Exp(2));
        Assert.Equal(1, token.Id);
        Assert.Equal(3 - z, token.Logprob, 5);
        Assert.Equal([1, 2], token.Top.Select(t => t.Id));
        Assert.Equal(2 - z, token.Top[1].Logprob, 5);
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits()
    {
        // logits [2, 1.5, -1] with tokens 0 and 2 seen, penalty 2: [1, 1.5, -2] so token 1 wins.
        var p = new SamplingParams { Temperature = 0, RepetitionPenalty = 2 };
        using var state = new SamplerState(null, [0, 2]);
        Assert.Equal(1, One([2f, 1.5f, -1f], p, state).Id);
    }

    [Fact]
    public void PresenceAndFrequencyPenaltiesSubtractPerOutputToken()
    {
        // Token 0 generated twice: 1.0 - 2 * 0.3 - 0.1 = 0.3 < 0.5; once: 1.0 - 0.3 - 0.1 = 0.6 > 0.5.
        var p = new SamplingParams { Temperature = 0, FrequencyPenalty = 0.3, PresencePenalty = 0.1 };
        using var state = new SamplerState(null, []);
        state.Append(0);
        state.Append(0);
        Assert.Equal(2, One([1.0f, 0.2f, 0.5f], p, state).Id);
        using var once = new SamplerState(null, []);
        once.Append(0);
        Assert.Equal(0, One([1.0f, 0.2f, 0.5f], p, once).Id);
    }

    [Fact]
    public void TheSameSeedDrawsTheSameTokens()
    {
        var logits = Enumerable.Range(0, 50).Select(i => (float)Math.Sin(i)).ToArray();
        var p = new SamplingParams { Temperature = 1.5, Seed = 42 };
        int[] Draw(ulong seed)
        {
            using var state = new SamplerState(seed, []);
            return Enumerable.Range(0, 20).Select(_ => One(logits, p, state).Id).ToArray();
        }
        Assert.Equal(Draw(42), Draw(42));
        Assert.NotEqual(Draw(42), Draw(43));
    }

    [Fact]
    public void TopKOneAndTinyTopPAreGreedy()
    {
        var logits = new[] { 0.5f, 2.5f, 2.4f, -1f };
        for (ulong seed = 0; seed < 20; seed++)
        {
            Assert.Equal(1, One(logits, new SamplingParams { Temperature = 1, TopK = 1, Seed = seed }).Id);
            Assert.Equal(1, One(logits, new SamplingParams { Temperature = 1, TopP = 1e-9, Seed = seed }).Id);
        }
    }

    [Fact]
    public void TopKAndMinPOnlyEverPickAllowedTokens()
    {
        var logits = new[] { 3f, 2.9f, 2.8f, 0f, -5f };
        var seen = new HashSet<int>();
        for (ulong seed = 0; seed < 200; seed++)
        {
            seen.Add(One(logits, new SamplingParams { Temperature = 1, TopK = 3, Seed = seed }).Id);
            // min_p 0.5: tokens under half the top probability (exp(-1) ≈ 0.37 < 0.5 for token 2? no: e^-0.2 ≈ 0.82) stay; 3 and 4 go.
            Assert.InRange(One(logits, new SamplingParams { Temperature = 1, MinP = 0.5, Seed = seed }).Id, 0, 2);
        }
        Assert.Equal([0, 1, 2], seen.Order());
    }

    [Fact]
    public void TopPKeepsTheSmallestSetAboveTheMass()
    {
        // probabilities ≈ [0.665, 0.245, 0.090]: top_p 0.8 keeps tokens 0 and 1 only.
        var logits = new[] { 2f, 1f, 0f };
        var seen = new HashSet<int>();
        for (ulong seed = 0; seed < 300; seed++) seen.Add(One(logits, new SamplingParams { Temperature = 1, TopP = 0.8, Seed = seed }).Id);
        Assert.Equal([0, 1], seen.Order());
    }

    [Theory]
    [InlineData(2.0)]
    [InlineData(0.5)]
    public void TemperatureDrawsTokensAsOftenAsTheScaledSoftmaxSays(double temperature)
    {
        float[] logits = [0f, 1f, 2f, -1f];
        var expected = logits.Select(l => Math.Exp(l / temperature)).ToArray();
        double sum = expected.Sum();
        expected = expected.Select(e => e / sum).ToArray();
        const int draws = 4000;
        var counts = new int[logits.Length];
        var p = new SamplingParams { Temperature = temperature, Seed = 1 };
        using var state = new SamplerState(1, []);
        for (int i = 0; i < draws; i++) counts[One(logits, p, state).Id]++;
        for (int id = 0; id < logits.Length; id++)
        {
            // Four standard deviations of a binomial frequency: a fixed seed makes this deterministic, the bound honest.
            double sigma = Math.Sqrt(expected[id] * (1 - expected[id]) / draws);
            Assert.InRange((double)counts[id] / draws, expected[id] - 4 * sigma, expected[id] + 4 * sigma);
        }
    }

    [Theory]
    [InlineData("temperature")]
    [InlineData("top_p")]
    [InlineData("top_k")]
    [InlineData("max_tokens")]
    [InlineData("logprobs")]
    [InlineData("stop")]
    [InlineData("stop_token_ids")]
    public void TheOneCheckNamesTheField(string field)
    {
        var p = field switch
        {
            "temperature" => new SamplingParams { Temperature = -1 },
            "top_p" => new SamplingParams { TopP = 1.5 },
            "top_k" => new SamplingParams { TopK = -2 },
            "max_tokens" => new SamplingParams { MaxTokens = 0 },
            "logprobs" => new SamplingParams { Logprobs = 99 },
            "stop" => new SamplingParams { Stop = Enumerable.Repeat("x", 40).ToArray() },
            _ => new SamplingParams { StopTokenIds = [1_000_000] },
        };
        var limits = new RequestLimits(1000, 4096);
        var error = Assert.Throws<RequestError>(() => limits.Check(new GenerationRequest([1, 2, 3], p), "prompt"));
        Assert.Equal(field, error.Field);
        var renamed = Assert.Throws<RequestError>(() => limits.Check(new GenerationRequest([1, 2, 3], p), "prompt", samplingField: f => "sampling." + f));
        Assert.Equal("sampling." + field, renamed.Field);
        Assert.StartsWith($"sampling.{field}: ", renamed.Message);
    }
}
