using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Qwen3Cluster.Grains.Hosting;
using TorchSharp;

namespace Qwen3Cluster.Silos;

/// <summary>Applies <c>Qwen3:Silo:Threads</c> to libtorch as the host starts, before any grain computes.</summary>
sealed class TorchThreads(IOptions<SiloRoleOptions> silo) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (silo.Value.Threads > 0) torch.set_num_threads(silo.Value.Threads);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
