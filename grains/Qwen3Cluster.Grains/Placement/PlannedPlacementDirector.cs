using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace Qwen3Cluster.Grains.Placement;

/// <summary>
/// Reads the silos' announced names and roles and puts each activation where the plan says; when the planned silo
/// is gone the plan, derived from the silos still present, names another eligible one, where the grain reloads its
/// weights. A silo that is leaving places nothing on itself (a grain migrating away from it included).
/// </summary>
public sealed partial class PlannedPlacementDirector(
    IClusterMembershipService membership,
    ISiloMetadataCache metadata,
    ClusterPlan plan,
    SiloDeparture departure,
    ILocalSiloDetails local,
    ILogger<PlannedPlacementDirector> logger) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var key = ModelGrainKey.Parse(target.GrainIdentity.Key.ToString()!);
        var present = Present(membership, metadata, context.GetCompatibleSilos(target));
        if (departure.Leaving) present.RemoveAll(p => p.Address.Equals(local.SiloAddress));
        string? chosen = plan.SiloFor(key, present.Select(p => p.Silo).ToList());
        if (chosen is null)
            throw new MissingRoleException(ClusterPlan.RoleFor(key), key.ToString());
        var address = present.First(p => p.Silo.Name == chosen).Address;
        LogPlaced(key.ToString(), chosen, address);
        return Task.FromResult(address);
    }

    /// <summary>The active silos (of <paramref name="among"/>, or all) that have announced their name and roles.</summary>
    public static List<(SiloAddress Address, SiloDescriptor Silo)> Present(IClusterMembershipService membership, ISiloMetadataCache metadata,
        IEnumerable<SiloAddress>? among = null)
    {
        var members = membership.CurrentSnapshot.Members;
        return (among ?? members.Keys)
            .Where(a => members.TryGetValue(a, out var m) && m.Status == SiloStatus.Active)
            .Select(a => (Address: a, Silo: SiloDescriptor.FromMetadata(metadata.GetSiloMetadata(a).Metadata)))
            .Where(p => p.Silo is not null)
            .Select(p => (p.Address, p.Silo!))
            .ToList();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Placing {Key} on silo {Silo} ({Address})")]
    partial void LogPlaced(string key, string silo, SiloAddress address);
}
