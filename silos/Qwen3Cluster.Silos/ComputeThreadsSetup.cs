using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Model.Kernels;

namespace Qwen3Cluster.Silos;

/// <summary>Applies <c>Qwen3:Silo:Threads</c> to the kernels' team and libtorch as the host starts, before any grain computes.</summary>
sealed class ComputeThreadsSetup(IOptions<SiloRoleOptions> silo) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        ComputeThreads.Configure(silo.Value.Threads);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
