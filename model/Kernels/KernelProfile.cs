using System.Collections.Concurrent;
using System.Diagnostics;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// Where a step's time goes, while enabled (<c>qwen3 generate --profile</c>): wall time and count of named sections
/// of the forward pass (attention, router, experts, LM head, sampling) and of the team's runs by job. Off, a section
/// costs one branch.
/// </summary>
public static class KernelProfile
{
    static readonly ConcurrentDictionary<string, Entry> _entries = new();

    public static bool Enabled { get; set; }

    sealed class Entry
    {
        public long Count;
        public long Ticks;
    }

    public readonly record struct Total(string Name, long Count, double Seconds);

    /// <summary>Measures until disposed: <c>using var _ = KernelProfile.Measure("lm_head");</c></summary>
    public static Section Measure(string name) => Enabled ? new Section(name, Stopwatch.GetTimestamp()) : default;

    internal static long Start() => Enabled ? Stopwatch.GetTimestamp() : 0;

    internal static void Stop(string name, long started)
    {
        if (started == 0) return;
        var entry = _entries.GetOrAdd(name, _ => new Entry());
        Interlocked.Increment(ref entry.Count);
        Interlocked.Add(ref entry.Ticks, Stopwatch.GetTimestamp() - started);
    }

    /// <summary>Counts an event with no duration (a sleeping worker woken).</summary>
    internal static void Count(string name)
    {
        if (Enabled) Interlocked.Increment(ref _entries.GetOrAdd(name, _ => new Entry()).Count);
    }

    public static void Reset() => _entries.Clear();

    public static IReadOnlyList<Total> Totals() =>
        _entries.Select(e => new Total(e.Key, e.Value.Count, (double)e.Value.Ticks / Stopwatch.Frequency))
            .OrderByDescending(t => t.Seconds).ToArray();

    public readonly struct Section(string? name, long started) : IDisposable
    {
        public void Dispose()
        {
            if (name is not null) Stop(name, started);
        }
    }
}
