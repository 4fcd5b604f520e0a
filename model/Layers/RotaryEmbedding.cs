using Qwen3Cluster.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Qwen3RotaryEmbedding: inverse frequencies from rope_theta (default, linear, dynamic at its initial length, or
/// YaRN), and cos/sin tables [T, Dh] for the positions of a step, scaled by YaRN's attention factor.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    readonly Tensor _invFreq;
    readonly double _attentionScaling;

    public RotaryEmbedding(Qwen3Config config, Device device)
    {
        (var invFreq, _attentionScaling) = InverseFrequencies(config);
        _invFreq = invFreq.to(device);
        invFreq.Dispose();
    }

    public double AttentionScaling => _attentionScaling;

    /// <summary>cos and sin [T, Dh] for positions [T] (int64).</summary>
    public (Tensor Cos, Tensor Sin) Tables(Tensor positions)
    {
        using var scope = NewDisposeScope();
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * _invFreq.unsqueeze(0); // [T, Dh/2]
        var emb = cat([freqs, freqs], -1); // [T, Dh]
        var cos = emb.cos() * _attentionScaling;
        var sin = emb.sin() * _attentionScaling;
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>x * cos + rotate_half(x) * sin for x [T, heads, Dh] and tables [T, Dh].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.size(-1) / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat([-x2, x1], -1);
        var result = x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
        return result.MoveToOuterDisposeScope();
    }

    static (Tensor InvFreq, double Scaling) InverseFrequencies(Qwen3Config config)
    {
        int dim = config.HeadDim;
        double theta = config.RopeTheta;
        var scaling = config.RopeScaling;
        switch (scaling?.RopeType)
        {
            case null or "default":
                return (Default(theta, dim), 1.0);
            case "linear":
                return (Default(theta, dim) / scaling.Factor!.Value, 1.0);
            case "dynamic":
                // At lengths up to max_position_embeddings dynamic NTK equals the default; transformers
                // recomputes only past it, which the context limit here never reaches.
                return (Default(theta, dim), 1.0);
            case "yarn":
                return Yarn(config, scaling, theta, dim);
            default:
                throw new ModelConfigException($"rope_scaling.rope_type '{scaling.RopeType}' is not supported.");
        }
    }

    static Tensor Default(double theta, int dim)
    {
        using var exponents = arange(0, dim, 2, ScalarType.Int64).to(ScalarType.Float32) / dim;
        using var powers = full_like(exponents, theta).pow(exponents);
        return powers.reciprocal();
    }

    /// <summary>
    /// transformers' _compute_yarn_parameters. Versions disagree on the factor when
    /// original_max_position_embeddings is given (4.5x used max_position_embeddings / original, 5.x the
    /// explicit factor); this follows 5.x and vLLM: the explicit factor wins, the ratio is only a fallback.
    /// </summary>
    static (Tensor, double) Yarn(Qwen3Config config, RopeScaling s, double theta, int dim)
    {
        int original = s.OriginalMaxPositionEmbeddings ?? config.MaxPositionEmbeddings;
        double factor = s.Factor ?? (double)config.MaxPositionEmbeddings / original;
        static double MScale(double scale, double m = 1) => scale <= 1 ? 1.0 : 0.1 * m * Math.Log(scale) + 1.0;
        double attention = s.AttentionFactor ?? (s.Mscale is { } m && m != 0 && s.MscaleAllDim is { } mAll && mAll != 0
            ? MScale(factor, m) / MScale(factor, mAll)
            : MScale(factor));
        double betaFast = s.BetaFast is { } bf && bf != 0 ? bf : 32;
        double betaSlow = s.BetaSlow is { } bs && bs != 0 ? bs : 1;
        double CorrectionDim(double rotations) =>
            dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = CorrectionDim(betaFast), high = CorrectionDim(betaSlow);
        if (s.Truncate)
        {
            low = Math.Floor(low);
            high = Math.Ceiling(high);
        }
        low = Math.Max(low, 0);
        high = Math.Min(high, dim - 1);
        if (low == high) high += 0.001;

        using var scope = NewDisposeScope();
        var exponents = arange(0, dim, 2, ScalarType.Int64).to(ScalarType.Float32) / dim;
        var posFreqs = full_like(exponents, theta).pow(exponents);
        var extrapolation = posFreqs.reciprocal();
        var interpolation = (posFreqs * factor).reciprocal();
        var ramp = ((arange(dim / 2, ScalarType.Float32) - low) / (high - low)).clamp(0, 1);
        var extrapolationFactor = 1 - ramp;
        var invFreq = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
        return (invFreq.MoveToOuterDisposeScope(), attention);
    }

    public void Dispose() => _invFreq.Dispose();
}
