using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Qwen3Cluster.Grains.Placement;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Silos;

/// <summary>
/// The cluster as this silo sees it: <c>qwen3_silos</c>, the active silos by <c>role</c> (a silo with two roles counts
/// in both). Every silo reports the same view, so dashboards take the max over instances.
/// </summary>
public sealed class SiloMetrics(IClusterMembershipService membership, ISiloMetadataCache metadata) : IHostedService, IDisposable
{
    readonly Meter _meter = new(EngineMetrics.MeterName);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _meter.CreateObservableGauge("qwen3.silos", Observe, description: "Active silos by role, as this silo sees the cluster");
        return Task.CompletedTask;
    }

    IEnumerable<Measurement<int>> Observe()
    {
        var present = PlannedPlacementDirector.Present(membership, metadata);
        return Grains.Hosting.SiloRoleOptions.AllRoles.Select(role =>
            new Measurement<int>(present.Count(p => p.Silo.Roles.Contains(role)), new KeyValuePair<string, object?>("role", role)));
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _meter.Dispose();
}
