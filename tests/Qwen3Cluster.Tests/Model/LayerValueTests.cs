using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Layers;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Model;

/// <summary>Single pieces against values worked out by hand (or by the formula in plain double arithmetic).</summary>
public sealed class LayerValueTests
{
    sealed class Given(Dictionary<string, float[]> values) : IWeightSource
    {
        public Device Device => CPU;
        public bool Contains(string name) => values.ContainsKey(name);
        public Tensor Load(string name, params long[] shape) => tensor(values[name]).reshape(shape);
    }

    [Fact]
    public void RmsNormScalesByTheRootMeanSquare()
    {
        using var norm = new RmsNorm(new Given(new() { ["n.weight"] = [1, 1, 1, 2] }), "n", 4, 1e-6);
        using var y = norm.forward(tensor(new float[] { 1, 2, 3, 4 }));
        double rms = Math.Sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
        Assert.Equal(new[] { 1 / rms, 2 / rms, 3 / rms, 8 / rms }, y.data<float>().ToArray().Select(v => (double)v), new Tol(1e-6));
    }

    [Fact]
    public void RopeRotatesHalvesByPositionTimesFrequency()
    {
        var config = ModelPresets.Dense(1, 8, 2, 1, 4, 8, false, vocab: 16) with { RopeTheta = 10000 };
        using var rope = new RotaryEmbedding(config, CPU);
        var (cos, sin) = rope.Tables(tensor(new long[] { 3 }));
        // inv_freq = [1, 10000^-0.5 = 0.01]; position 3: angles [3, 0.03, 3, 0.03].
        double[] angles = [3, 0.03, 3, 0.03];
        Assert.Equal(angles.Select(Math.Cos), cos.data<float>().ToArray().Select(v => (double)v), new Tol(1e-6));
        using var x = tensor(new float[] { 1, 2, 3, 4 }).reshape(1, 1, 4);
        using var rotated = RotaryEmbedding.Apply(x, cos, sin);
        // [x1*cos - x3*sin, x2*cos - x4*sin, x3*cos + x1*sin, x4*cos + x2*sin]
        double[] expected =
        [
            1 * Math.Cos(3) - 3 * Math.Sin(3), 2 * Math.Cos(0.03) - 4 * Math.Sin(0.03),
            3 * Math.Cos(3) + 1 * Math.Sin(3), 4 * Math.Cos(0.03) + 2 * Math.Sin(0.03),
        ];
        Assert.Equal(expected, rotated.data<float>().ToArray().Select(v => (double)v), new Tol(1e-5));
    }

    [Fact]
    public void YarnBlendsInterpolatedAndExtrapolatedFrequenciesAndScalesAttention()
    {
        var config = ModelPresets.Dense(1, 64, 1, 1, 64, 8, false, vocab: 16) with
        {
            RopeTheta = 1e6,
            MaxPositionEmbeddings = 131072,
            RopeScaling = new RopeScaling("yarn", 4.0, 32768, null, null, null, null, null, true),
        };
        using var rope = new RotaryEmbedding(config, CPU);
        Assert.Equal(0.1 * Math.Log(4) + 1, rope.AttentionScaling, 12);
        // transformers' formula in double: correction range from beta_fast 32 / beta_slow 1 over the original length.
        int dim = 64;
        double Correction(double rotations) => dim * Math.Log(32768 / (rotations * 2 * Math.PI)) / (2 * Math.Log(1e6));
        double low = Math.Max(Math.Floor(Correction(32)), 0), high = Math.Min(Math.Ceiling(Correction(1)), dim - 1);
        var (cos, _) = rope.Tables(tensor(new long[] { 1 }));
        var actual = cos.data<float>().ToArray();
        for (int i = 0; i < dim / 2; i++)
        {
            double posFreq = Math.Pow(1e6, 2.0 * i / dim);
            double ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            double extrapolationWeight = 1 - ramp;
            double invFreq = 1 / (4 * posFreq) * (1 - extrapolationWeight) + 1 / posFreq * extrapolationWeight;
            Assert.Equal(Math.Cos(invFreq) * rope.AttentionScaling, actual[i], 5);
        }
    }

    [Fact]
    public void RouterRenormalisesTheTopKOfTheSoftmax()
    {
        // Router weight picks out the token's features: logits = [1, 2, 3, 0].
        var weights = new Given(new() { ["g.weight"] = [1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1] });
        using var router = new Router(weights, "g", 3, 4, 2, normTopkProb: true);
        using var routing = router.Route(tensor(new float[] { 1, 2, 0 }).reshape(1, 3));
        Assert.Equal([2L, 1L], routing.ExpertIds.data<long>().ToArray());
        double e2 = Math.Exp(3), e1 = Math.Exp(2);
        Assert.Equal(new[] { e2 / (e2 + e1), e1 / (e2 + e1) }, routing.Weights.data<float>().ToArray().Select(v => (double)v), new Tol(1e-6));
    }

    sealed class Tol(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tolerance;
        public int GetHashCode(double value) => 0;
    }
}
