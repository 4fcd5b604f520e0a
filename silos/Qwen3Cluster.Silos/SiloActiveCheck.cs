using Microsoft.Extensions.Diagnostics.HealthChecks;
using Orleans.Runtime;

namespace Qwen3Cluster.Silos;

/// <summary>Healthy while this silo is an active member of its cluster (what a stage or experts silo's probes ask).</summary>
public sealed class SiloActiveCheck(IClusterMembershipService membership, ILocalSiloDetails local) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var status = membership.CurrentSnapshot.GetSiloStatus(local.SiloAddress);
        return Task.FromResult(status == SiloStatus.Active
            ? HealthCheckResult.Healthy("an active member of the cluster")
            : HealthCheckResult.Unhealthy($"membership status {status}"));
    }
}
