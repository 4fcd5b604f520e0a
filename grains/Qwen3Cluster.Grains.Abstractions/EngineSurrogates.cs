using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Grains;

// The engine's own records cross grain calls as they are: the model knows nothing of Orleans, so each is written
// through a surrogate (Orleans' way for types it does not own) rather than copied into a twin wire type.

[GenerateSerializer, Immutable, Alias("qwen3.SamplingParams")]
public struct SamplingParamsSurrogate
{
    [Id(0)] public double Temperature;
    [Id(1)] public double TopP;
    [Id(2)] public int TopK;
    [Id(3)] public double MinP;
    [Id(4)] public double RepetitionPenalty;
    [Id(5)] public double PresencePenalty;
    [Id(6)] public double FrequencyPenalty;
    [Id(7)] public ulong? Seed;
    [Id(8)] public int MaxTokens;
    [Id(9)] public string[] Stop;
    [Id(10)] public int[] StopTokenIds;
    [Id(11)] public bool IgnoreEos;
    [Id(12)] public int Logprobs;
}

[RegisterConverter]
public sealed class SamplingParamsConverter : IConverter<SamplingParams, SamplingParamsSurrogate>
{
    public SamplingParams ConvertFromSurrogate(in SamplingParamsSurrogate s) => new()
    {
        Temperature = s.Temperature,
        TopP = s.TopP,
        TopK = s.TopK,
        MinP = s.MinP,
        RepetitionPenalty = s.RepetitionPenalty,
        PresencePenalty = s.PresencePenalty,
        FrequencyPenalty = s.FrequencyPenalty,
        Seed = s.Seed,
        MaxTokens = s.MaxTokens,
        Stop = s.Stop ?? [],
        StopTokenIds = s.StopTokenIds ?? [],
        IgnoreEos = s.IgnoreEos,
        Logprobs = s.Logprobs,
    };

    public SamplingParamsSurrogate ConvertToSurrogate(in SamplingParams p) => new()
    {
        Temperature = p.Temperature,
        TopP = p.TopP,
        TopK = p.TopK,
        MinP = p.MinP,
        RepetitionPenalty = p.RepetitionPenalty,
        PresencePenalty = p.PresencePenalty,
        FrequencyPenalty = p.FrequencyPenalty,
        Seed = p.Seed,
        MaxTokens = p.MaxTokens,
        Stop = [.. p.Stop],
        StopTokenIds = [.. p.StopTokenIds],
        IgnoreEos = p.IgnoreEos,
        Logprobs = p.Logprobs,
    };
}

[GenerateSerializer, Immutable, Alias("qwen3.GenerationRequest")]
public struct GenerationRequestSurrogate
{
    [Id(0)] public int[] PromptTokens;
    [Id(1)] public SamplingParams Sampling;
    [Id(2)] public string? ParkAs;
    [Id(3)] public string? ResumeFrom;
    /// <summary>The output constraint's kind (<see cref="ConstraintKind"/>) and text; no text, no constraint.</summary>
    [Id(4)] public int ConstraintKind;
    [Id(5)] public string? ConstraintSource;
}

[RegisterConverter]
public sealed class GenerationRequestConverter : IConverter<GenerationRequest, GenerationRequestSurrogate>
{
    public GenerationRequest ConvertFromSurrogate(in GenerationRequestSurrogate s) =>
        new(s.PromptTokens, s.Sampling)
        {
            ParkAs = s.ParkAs,
            ResumeFrom = s.ResumeFrom,
            Constraint = s.ConstraintSource is { } source ? new OutputConstraint((ConstraintKind)s.ConstraintKind, source) : null,
        };

    public GenerationRequestSurrogate ConvertToSurrogate(in GenerationRequest r) =>
        new()
        {
            PromptTokens = [.. r.PromptTokens],
            Sampling = r.Sampling,
            ParkAs = r.ParkAs,
            ResumeFrom = r.ResumeFrom,
            ConstraintKind = (int)(r.Constraint?.Kind ?? 0),
            ConstraintSource = r.Constraint?.Source,
        };
}

[GenerateSerializer, Immutable, Alias("qwen3.TokenLogprob")]
public struct TokenLogprobSurrogate
{
    [Id(0)] public int Id;
    [Id(1)] public float Logprob;
}

[RegisterConverter]
public sealed class TokenLogprobConverter : IConverter<TokenLogprob, TokenLogprobSurrogate>
{
    public TokenLogprob ConvertFromSurrogate(in TokenLogprobSurrogate s) => new(s.Id, s.Logprob);

    public TokenLogprobSurrogate ConvertToSurrogate(in TokenLogprob t) => new() { Id = t.Id, Logprob = t.Logprob };
}

[GenerateSerializer, Immutable, Alias("qwen3.GeneratedToken")]
public struct GeneratedTokenSurrogate
{
    [Id(0)] public int Id;
    [Id(1)] public string Text;
    [Id(2)] public float Logprob;
    [Id(3)] public TokenLogprob[] Top;
}

[RegisterConverter]
public sealed class GeneratedTokenConverter : IConverter<GeneratedToken, GeneratedTokenSurrogate>
{
    public GeneratedToken ConvertFromSurrogate(in GeneratedTokenSurrogate s) => new(s.Id, s.Text, s.Logprob, s.Top ?? []);

    public GeneratedTokenSurrogate ConvertToSurrogate(in GeneratedToken t) =>
        new() { Id = t.Id, Text = t.Text, Logprob = t.Logprob, Top = [.. t.Top] };
}

[GenerateSerializer, Immutable, Alias("qwen3.GenerationUsage")]
public struct GenerationUsageSurrogate
{
    [Id(0)] public int PromptTokens;
    [Id(1)] public int CachedPromptTokens;
    [Id(2)] public int CompletionTokens;
}

[RegisterConverter]
public sealed class GenerationUsageConverter : IConverter<GenerationUsage, GenerationUsageSurrogate>
{
    public GenerationUsage ConvertFromSurrogate(in GenerationUsageSurrogate s) => new(s.PromptTokens, s.CachedPromptTokens, s.CompletionTokens);

    public GenerationUsageSurrogate ConvertToSurrogate(in GenerationUsage u) =>
        new() { PromptTokens = u.PromptTokens, CachedPromptTokens = u.CachedPromptTokens, CompletionTokens = u.CompletionTokens };
}

[GenerateSerializer, Immutable, Alias("qwen3.RequestError")]
public struct RequestErrorSurrogate
{
    [Id(0)] public int Kind;
    [Id(1)] public string? Field;
    [Id(2)] public string Reason;
}

[RegisterConverter]
public sealed class RequestErrorConverter : IConverter<RequestError, RequestErrorSurrogate>
{
    public RequestError ConvertFromSurrogate(in RequestErrorSurrogate s) => new((ErrorKind)s.Kind, s.Field, s.Reason);

    public RequestErrorSurrogate ConvertToSurrogate(in RequestError e) => new() { Kind = (int)e.Kind, Field = e.Field, Reason = e.Reason };
}

[GenerateSerializer, Immutable, Alias("qwen3.GenerationUpdate")]
public struct GenerationUpdateSurrogate
{
    [Id(0)] public GeneratedToken[] Tokens;
    [Id(1)] public string Text;
    [Id(2)] public string? FinishReason;
    // Optional parts as nullable surrogates: Orleans 10.4.2's surrogate codec throws on a null field of its type.
    [Id(3)] public GenerationUsageSurrogate? Usage;
    [Id(4)] public RequestErrorSurrogate? Error;
}

[RegisterConverter]
public sealed class GenerationUpdateConverter : IConverter<GenerationUpdate, GenerationUpdateSurrogate>
{
    static readonly GenerationUsageConverter Usage = new();
    static readonly RequestErrorConverter Error = new();

    public GenerationUpdate ConvertFromSurrogate(in GenerationUpdateSurrogate s) => new(s.Tokens ?? [], s.Text, s.FinishReason,
        s.Usage is { } u ? Usage.ConvertFromSurrogate(u) : null, s.Error is { } e ? Error.ConvertFromSurrogate(e) : null);

    public GenerationUpdateSurrogate ConvertToSurrogate(in GenerationUpdate u) => new()
    {
        Tokens = [.. u.Tokens],
        Text = u.Text,
        FinishReason = u.FinishReason,
        Usage = u.Usage is { } usage ? Usage.ConvertToSurrogate(usage) : null,
        Error = u.Error is { } error ? Error.ConvertToSurrogate(error) : null,
    };
}

[GenerateSerializer, Immutable, Alias("qwen3.SequenceSlice")]
public struct SequenceSliceSurrogate
{
    [Id(0)] public int StartPosition;
    [Id(1)] public int QueryLength;
    [Id(2)] public int[] BlockTable;
}

[RegisterConverter]
public sealed class SequenceSliceConverter : IConverter<SequenceSlice, SequenceSliceSurrogate>
{
    public SequenceSlice ConvertFromSurrogate(in SequenceSliceSurrogate s) => new(s.StartPosition, s.QueryLength, s.BlockTable);

    public SequenceSliceSurrogate ConvertToSurrogate(in SequenceSlice s) =>
        new() { StartPosition = s.StartPosition, QueryLength = s.QueryLength, BlockTable = s.BlockTable };
}

[GenerateSerializer, Immutable, Alias("qwen3.ForwardContext")]
public struct ForwardContextSurrogate
{
    [Id(0)] public SequenceSlice[] Slices;
    [Id(1)] public int BlockSize;
    [Id(2)] public int[] LogitRows;
}

[RegisterConverter]
public sealed class ForwardContextConverter : IConverter<ForwardContext, ForwardContextSurrogate>
{
    public ForwardContext ConvertFromSurrogate(in ForwardContextSurrogate s) => new(s.Slices, s.BlockSize, s.LogitRows);

    public ForwardContextSurrogate ConvertToSurrogate(in ForwardContext c) =>
        new() { Slices = [.. c.Slices], BlockSize = c.BlockSize, LogitRows = c.LogitRows };
}
