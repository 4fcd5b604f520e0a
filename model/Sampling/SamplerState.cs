using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Sampling;

/// <summary>
/// What sampling one sequence remembers between steps: its own random generator (so a seeded request draws
/// the same numbers whatever else shares its batch) and the token counts the penalties need.
/// </summary>
public sealed class SamplerState : IDisposable
{
    readonly HashSet<int> _seen = [];
    readonly Dictionary<int, int> _outputCounts = [];
    Generator? _generator;

    public ulong Seed { get; }

    public SamplerState(ulong? seed, IEnumerable<int> promptTokens)
    {
        Seed = seed ?? (ulong)Random.Shared.NextInt64(long.MaxValue);
        _seen.UnionWith(promptTokens);
    }

    /// <summary>Prompt and output tokens: what the repetition penalty applies to.</summary>
    public IReadOnlyCollection<int> Seen => _seen;

    /// <summary>Output tokens and how often each occurred: what presence and frequency penalties apply to.</summary>
    public IReadOnlyDictionary<int, int> OutputCounts => _outputCounts;

    public void Append(int token)
    {
        _seen.Add(token);
        _outputCounts[token] = _outputCounts.GetValueOrDefault(token) + 1;
    }

    public Generator GeneratorFor(Device device)
    {
        if (_generator is not null && _generator.device.type == device.type && _generator.device.index == device.index)
            return _generator;
        _generator?.Dispose();
        _generator = new Generator(Seed, device);
        return _generator;
    }

    public void Dispose()
    {
        _generator?.Dispose();
        _generator = null;
    }
}
