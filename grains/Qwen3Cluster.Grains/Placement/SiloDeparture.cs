using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Qwen3Cluster.Grains.Hosting;

namespace Qwen3Cluster.Grains.Placement;

/// <summary>
/// A silo that stops gracefully (SIGTERM, Ctrl-C, a pod being drained) hands its stages and expert groups over
/// before Orleans deactivates them. It joins the silo's shutdown at the stage where membership announces it as
/// shutting down; from then on this silo places nothing on itself (<see cref="Leaving"/>), and the other silos'
/// <see cref="PlanKeeper"/>s, seeing it gone from the plan, preload what the plan now gives them and migrate it
/// over, just as when a silo joins. This silo waits until every grain of its own that some silo left can take has
/// gone, or <c>Qwen3:Clustering:LeaveTimeoutSeconds</c> has passed; what is still here then deactivates, and its
/// next call loads it by the plan. When no other silo has come to take anything within <see cref="Unclaimed"/>
/// (every silo is stopping at once, as on Ctrl-C of run.sh, or this silo's view of the others is stale), it leaves
/// at once. Copies of hot groups are not handed over: the stages drop them.
/// </summary>
public sealed partial class SiloDeparture(
    ShardLoader loader,
    ClusterPlan plan,
    ModelDeployment model,
    IClusterMembershipService membership,
    ISiloMetadataCache metadata,
    TimeSpan timeout,
    ILogger<SiloDeparture> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    /// <summary>How long a leaving silo waits for the first sign of a taker: two plan-keeper reads and a margin.</summary>
    public static readonly TimeSpan Unclaimed = PlanKeeper.Period * 5;

    volatile bool _leaving;

    /// <summary>Whether this silo is stopping: the placement director then places nothing here.</summary>
    public bool Leaving => _leaving;

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(SiloDeparture), ServiceLifecycleStage.BecomeActive, _ => Task.CompletedTask, LeaveAsync);

    async Task LeaveAsync(CancellationToken cancellationToken)
    {
        _leaving = true;
        long started = Stopwatch.GetTimestamp();
        var clock = Stopwatch.StartNew();
        var waiting = Pending();
        if (waiting.Count == 0) return;
        var leaving = waiting.ToList();
        var lastProgress = TimeSpan.Zero;
        LogLeaving(model.Silo.Name, waiting.Count, string.Join(", ", waiting));
        while (waiting.Count > 0 && clock.Elapsed < timeout && !cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(100, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            int before = waiting.Count;
            waiting = Pending();
            if (waiting.Count < before) lastProgress = clock.Elapsed;
            // Asked but nothing moves (the askers are stopping too): no more than three times the unclaimed wait.
            if (waiting.Count > 0 && clock.Elapsed - lastProgress > Unclaimed * 3) break;
            if (waiting.Count > 0 && clock.Elapsed > Unclaimed && loader.LastAsked < started)
            {
                LogUnclaimed(Unclaimed.TotalSeconds);
                break;
            }
        }
        // Handed over: gone from this silo. The rest stayed, because the silos that could take them left too, or time ran out.
        var here = loader.Hosted.Select(k => k.ToString()).ToHashSet();
        int handed = leaving.Count(k => !here.Contains(k));
        var stayed = leaving.Where(here.Contains).ToList();
        if (stayed.Count == 0) LogHandedOver(handed, clock.Elapsed.TotalSeconds);
        else LogNotHandedOver(handed, clock.Elapsed.TotalSeconds, string.Join(", ", stayed));
    }

    /// <summary>The grains loaded here that a silo still present could take.</summary>
    List<string> Pending()
    {
        string me = model.Silo.Name;
        var others = PlannedPlacementDirector.Present(membership, metadata).Select(p => p.Silo).Where(s => s.Name != me).ToList();
        return loader.Hosted
            .Where(key => key is not ExpertGroupKey { Copy: > 0 } && plan.SiloFor(key, others) is not null)
            .Select(key => key.ToString())
            .Order(StringComparer.Ordinal)
            .ToList();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Silo {Silo} is leaving: waiting for the other silos to take over {Count} grains ({Keys})")]
    partial void LogLeaving(string silo, int count, string keys);

    [LoggerMessage(Level = LogLevel.Information, Message = "Leaving: no silo came for the grains in {Seconds:F0}s (the others are stopping too)")]
    partial void LogUnclaimed(double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Left: {Count} grains handed over in {Seconds:F1}s")]
    partial void LogHandedOver(int count, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Leaving after {Seconds:F1}s with {Count} grains handed over; not handed over (no silo left to take them, or time ran out; loaded again on their next call): {Keys}")]
    partial void LogNotHandedOver(int count, double seconds, string keys);
}
