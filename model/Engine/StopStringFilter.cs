using System.Text;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// Releases generated text while watching for stop strings: the last (longest stop − 1) characters are held
/// back until they can no longer start a stop string, and text from a stop string on is never released.
/// </summary>
public sealed class StopStringFilter(IReadOnlyList<string> stops)
{
    readonly int _holdback = stops.Count == 0 ? 0 : stops.Max(s => s.Length) - 1;
    readonly StringBuilder _pending = new();

    public (string Released, bool Stopped) Push(string delta)
    {
        if (stops.Count == 0) return (delta, false);
        _pending.Append(delta);
        string pending = _pending.ToString();
        int first = -1;
        foreach (var stop in stops)
        {
            int at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        if (first >= 0)
        {
            _pending.Clear();
            return (pending[..first], true);
        }
        int release = Math.Max(0, pending.Length - _holdback);
        if (release > 0 && release < pending.Length && char.IsHighSurrogate(pending[release - 1])) release--;
        _pending.Remove(0, release);
        return (pending[..release], false);
    }

    public string Flush()
    {
        string rest = _pending.ToString();
        _pending.Clear();
        return rest;
    }
}
