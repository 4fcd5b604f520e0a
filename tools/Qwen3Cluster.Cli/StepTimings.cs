using System.Diagnostics.Metrics;
using System.Text.Json.Serialization;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Cli;

/// <summary>
/// Listens to this process's engine instruments for one run: each step's time and each constrained row's mask time,
/// to report what constraining costs against the steps it ran in (issue figures: median and p99 per token, and the
/// share of the step).
/// </summary>
public sealed class StepTimings : IDisposable
{
    readonly MeterListener _listener = new();
    readonly List<double> _steps = [];
    readonly List<double> _masks = [];

    public StepTimings()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == EngineMetrics.MeterName && instrument.Name is "qwen3.step_duration" or "qwen3.constraint.mask_duration")
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<double>((instrument, value, _, _) =>
        {
            var list = instrument.Name == "qwen3.step_duration" ? _steps : _masks;
            lock (list) list.Add(value);
        });
        _listener.Start();
    }

    public sealed record Summary(
        int Steps,
        int Masks,
        [property: JsonPropertyName("mask_us_p50")] double MaskMicrosecondsP50,
        [property: JsonPropertyName("mask_us_p99")] double MaskMicrosecondsP99,
        [property: JsonPropertyName("mask_us_max")] double MaskMicrosecondsMax,
        [property: JsonPropertyName("step_ms_p50")] double StepMillisecondsP50,
        [property: JsonPropertyName("mask_share_of_step")] double MaskShareOfStep);

    public Summary Report()
    {
        double[] steps, masks;
        lock (_steps) steps = [.. _steps.Order()];
        lock (_masks) masks = [.. _masks.Order()];
        static double At(double[] sorted, double q) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
        double share = steps.Sum() > 0 ? masks.Sum() / steps.Sum() : 0;
        return new Summary(steps.Length, masks.Length, Math.Round(At(masks, 0.5) * 1e6, 1), Math.Round(At(masks, 0.99) * 1e6, 1),
            Math.Round(masks.LastOrDefault() * 1e6, 1), Math.Round(At(steps, 0.5) * 1e3, 2), Math.Round(share, 4));
    }

    public void Dispose() => _listener.Dispose();
}
