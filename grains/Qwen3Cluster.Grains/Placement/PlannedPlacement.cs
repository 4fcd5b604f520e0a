using Orleans.Placement;
using Orleans.Runtime;

namespace Qwen3Cluster.Grains.Placement;

/// <summary>Places a grain on the silo the <see cref="ClusterPlan"/> names for its key.</summary>
public sealed class PlannedPlacementStrategy : PlacementStrategy
{
    public static readonly PlannedPlacementStrategy Instance = new();
}

[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class PlannedPlacementAttribute() : PlacementAttribute(PlannedPlacementStrategy.Instance);
