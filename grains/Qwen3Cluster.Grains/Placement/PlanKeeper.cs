using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Qwen3Cluster.Grains.Hosting;

namespace Qwen3Cluster.Grains.Placement;

/// <summary>
/// Keeps this silo's share of the plan as silos join and leave: whenever the set of silos has settled on a new
/// shape, every stage and expert group the plan now gives this silo but that runs elsewhere is handed over. This
/// silo loads the weights first (<see cref="ShardLoader.PreloadAsync"/>), then asks the grain to migrate
/// (<see cref="IModelShardGrain.HandOver"/>); Orleans holds its calls meanwhile and the old activation frees its
/// weights as it goes. So a silo that joins late, or is added to scale out, gets its share while the cluster
/// serves. Replica grains never move: their decode loops hold the streams.
/// </summary>
public sealed partial class PlanKeeper(
    IClusterMembershipService membership,
    ISiloMetadataCache metadata,
    ClusterPlan plan,
    ModelDeployment model,
    ShardLoader loader,
    IGrainFactory grains,
    SiloDeparture departure,
    ILogger<PlanKeeper> logger) : BackgroundService
{
    /// <summary>How often the view of the cluster is read; a view must hold for two reads before it is acted on.</summary>
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(2);

    /// <summary>How long the keeper waits for a grain to say where it runs, or to accept a hand-over, before going on.</summary>
    static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        var roles = model.Silo.EffectiveRoles;
        if (!roles.Contains(SiloRoleOptions.Stage) && !roles.Contains(SiloRoleOptions.Experts)) return;
        using var timer = new PeriodicTimer(Period);
        string? previous = null, balanced = null;
        while (await timer.WaitForNextTickAsync(stopping))
        {
            var present = PlannedPlacementDirector.Present(membership, metadata).Select(p => p.Silo).ToList();
            string view = string.Join(' ', present.Select(s => $"{s.Name}:{string.Join(',', s.Roles.Order())}").Order());
            bool settled = view == previous;
            previous = view;
            if (!settled || view == balanced || departure.Leaving || !present.Any(s => s.Name == model.Silo.Name)) continue;
            try
            {
                if (await BalanceAsync(present, stopping)) balanced = view;
            }
            catch (Exception e) when (!stopping.IsCancellationRequested)
            {
                LogFailed(e, "the plan");
            }
        }
    }

    /// <summary>Hands over what the plan gives this silo; true when all of it already runs here.</summary>
    async Task<bool> BalanceAsync(IReadOnlyList<SiloDescriptor> present, CancellationToken stopping)
    {
        string me = model.Silo.Name;
        bool settled = true;
        foreach (var key in model.ShardKeys())
        {
            if (plan.SiloFor(key, present) != me) continue;
            IModelShardGrain shard = key is StageKey s ? grains.GetStage(s) : grains.GetExpertGroup((ExpertGroupKey)key);
            try
            {
                // Bounded: a call to a grain whose silo just died must not hold the keeper up until the response timeout.
                var host = await shard.Host().WaitAsync(CallTimeout, stopping);
                if (host.SiloName == me) continue;
                settled = false;
                double seconds = host.Loaded ? await loader.PreloadAsync(key) : 0;
                LogHandingOver(key.ToString(), host.SiloName, me, seconds);
                await shard.HandOver().WaitAsync(CallTimeout, stopping);
            }
            catch (Exception e) when (!stopping.IsCancellationRequested)
            {
                // One grain that cannot be reached yet (its silo just died) must not hold up the others.
                settled = false;
                LogFailed(e, key.ToString());
            }
        }
        return settled;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Plan: {Key} moves from silo {From} to silo {To} (weights preloaded in {Seconds:F1}s)")]
    partial void LogHandingOver(string key, string from, string to, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Plan: a hand-over of {Key} failed; it is tried again")]
    partial void LogFailed(Exception error, string key);
}
