using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.TestingHost;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.Placement;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Silos;

namespace Qwen3Cluster.ClusterTests;

/// <summary>
/// A multi-silo cluster in this process (Orleans' in-process test cluster: real serialization between silos)
/// serving one checkpoint, each silo with its own name and roles.
/// </summary>
public sealed class ModelCluster : IAsyncDisposable
{
    public InProcessTestCluster Cluster { get; }
    public IClusterClient Client => Cluster.Client;
    public string Model { get; }

    ModelCluster(InProcessTestCluster cluster, string model)
    {
        Cluster = cluster;
        Model = model;
    }

    public static async Task<ModelCluster> StartAsync(string checkpoint, (string Name, string Roles)[] silos,
        int stages = 1, int expertGroups = 1, int kvBlocks = 256, int blockSize = 4, Dictionary<string, string>? pins = null,
        Dictionary<string, string>? settings = null)
    {
        const string model = "test-model";
        var builder = new InProcessTestClusterBuilder((short)silos.Length);
        // The test's client reaches the cluster through the first silo (the gateway role, as outside clients do) only:
        // a response routed back through another silo's gateway is lost when that silo is killed, and the client
        // then waits out its 5-minute response timeout (seen: the mid-stream stage failure test hanging for 5 minutes
        // whenever the client had picked the killed silo's gateway).
        builder.Options.GatewayPerSilo = false;
        builder.ConfigureSilo((options, silo) =>
        {
            int index = int.Parse(options.SiloName.Split('_')[^1]);
            var (name, roles) = silos[index];
            var values = new Dictionary<string, string?>
            {
                ["Qwen3:Model:Name"] = model,
                ["Qwen3:Model:Path"] = checkpoint,
                ["Qwen3:Model:Stages"] = stages.ToString(),
                ["Qwen3:Model:ExpertGroups"] = expertGroups.ToString(),
                ["Qwen3:Model:KvBlocks"] = kvBlocks.ToString(),
                ["Qwen3:Model:BlockSize"] = blockSize.ToString(),
                ["Qwen3:Silo:Name"] = name,
            };
            var roleList = roles.Split(',');
            for (int i = 0; i < roleList.Length; i++) values[$"Qwen3:Silo:Roles:{i}"] = roleList[i];
            foreach (var (key, silo2) in pins ?? []) values[$"Qwen3:Placement:{key}"] = silo2;
            foreach (var (key, value) in settings ?? []) values[key] = value;
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
            silo.AddQwen3(configuration, configureClustering: false);
        });
        builder.ConfigureClient(client => client.Configure<ClientMessagingOptions>(o =>
        {
            o.MaxMessageBodySize = SiloHosting.MaxMessageBodyBytes;
            o.ResponseTimeout = TimeSpan.FromMinutes(5);
        }));
        var cluster = builder.Build();
        await cluster.DeployAsync();
        await cluster.WaitForLivenessToStabilizeAsync();
        await WaitForMetadataAsync(cluster, silos.Length);
        return new ModelCluster(cluster, model);
    }

    /// <summary>Every silo must see every silo's announced roles before placement can follow the plan.</summary>
    static async Task WaitForMetadataAsync(InProcessTestCluster cluster, int silos)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            bool all = cluster.Silos.All(handle =>
            {
                var cache = handle.ServiceProvider.GetRequiredService<ISiloMetadataCache>();
                return cluster.Silos.All(other => SiloDescriptor.FromMetadata(cache.GetSiloMetadata(other.SiloAddress).Metadata) is not null);
            });
            if (all) return;
            await Task.Delay(100);
        }
        throw new TimeoutException("Silo metadata did not reach every silo.");
    }

    public IReplicaGrain Replica(int replica = 0) => Client.GetReplica(new ReplicaKey(Model, replica));

    /// <summary>
    /// Polls the replica's stats until <paramref name="done"/> holds (things freed in the background); a minute is
    /// far beyond what any of it takes, so only a real hang fails, and a fast machine returns at once.
    /// </summary>
    public async Task<ReplicaStats> WaitForStatsAsync(Func<ReplicaStats, Task<bool>> done)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        var stats = await Replica().Stats();
        while (DateTime.UtcNow < deadline && !await done(stats))
        {
            await Task.Delay(50);
            stats = await Replica().Stats();
        }
        return stats;
    }

    public async Task<Generated> GenerateAsync(int[] prompt, SamplingParams sampling, CancellationToken cancellationToken = default)
    {
        var updates = new List<GenerationUpdate>();
        await foreach (var u in Replica().Generate(new GenerationRequest(prompt, sampling), cancellationToken)) updates.Add(u);
        return Generated.From(updates);
    }

    public async ValueTask DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
    }
}

/// <summary>What a stream of updates added up to.</summary>
public sealed record Generated(int[] Ids, float[] Logprobs, int[][] Top, GenerationUsage Usage, string Finish)
{
    public static Generated From(IReadOnlyList<GenerationUpdate> updates)
    {
        if (updates.FirstOrDefault(u => u.Error is not null)?.Error is { } error) throw error;
        var tokens = updates.SelectMany(u => u.Tokens).ToArray();
        return new Generated(tokens.Select(t => t.Id).ToArray(), tokens.Select(t => t.Logprob).ToArray(),
            tokens.Select(t => t.Top.Select(a => a.Id).ToArray()).ToArray(), updates[^1].Usage!, updates[^1].FinishReason!);
    }
}
