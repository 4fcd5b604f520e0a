using Grpc.Core;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The Cluster gRPC service: the silos (from Orleans membership and the roles each announces) and every grain of
/// the served model, asked where it runs. Asking places a grain that had no activation yet (on its planned silo,
/// without loading it), as its first request would. The copies of hot expert groups are listed after the groups:
/// those some stage uses now.
/// </summary>
public sealed class ClusterService(
    ModelDeployment model,
    IGrainFactory grains,
    IClusterMembershipService membership,
    ISiloMetadataCache metadata) : Protos.V1.Cluster.ClusterBase
{
    public override async Task<ClusterDescription> DescribeCluster(DescribeClusterRequest request, ServerCallContext context)
    {
        var description = new ClusterDescription { Model = model.Name };
        var silos = new List<SiloInfo>();
        foreach (var member in membership.CurrentSnapshot.Members.Values
                     .Where(m => m.Status is not SiloStatus.Dead and not SiloStatus.None))
        {
            var silo = SiloDescriptor.FromMetadata(metadata.GetSiloMetadata(member.SiloAddress).Metadata);
            var info = new SiloInfo
            {
                Name = silo?.Name ?? member.Name,
                Address = member.SiloAddress.ToParsableString(),
                Device = silo?.Device ?? "",
                Status = member.Status.ToString(),
            };
            if (silo is not null) info.Roles.AddRange(silo.Roles.Order(StringComparer.Ordinal));
            silos.Add(info);
        }
        description.Silos.AddRange(silos.OrderBy(s => s.Name, StringComparer.Ordinal));
        var copies = new HashSet<ExpertGroupKey>();
        var grainInfos = await Task.WhenAll(GrainsOfTheModel().Select(g => DescribeAsync(g, copies, context.CancellationToken)));
        description.Grains.AddRange(grainInfos);
        var copyInfos = copies.OrderBy(c => c.Stage).ThenBy(c => c.Group).ThenBy(c => c.Copy)
            .Select(c => ExpertGroupInfo(c)).ToList();
        description.Grains.AddRange(await Task.WhenAll(copyInfos.Select(g => DescribeAsync(g, copies, context.CancellationToken))));
        return description;
    }

    GrainInfo ExpertGroupInfo(ExpertGroupKey g)
    {
        var stage = model.Stages[g.Stage];
        var range = model.ExpertGroups[g.Group];
        return new GrainInfo
        {
            Key = g.ToString(), Kind = "expert_group", LayerStart = stage.Start, LayerEnd = stage.End,
            ExpertStart = range.Lo, ExpertEnd = range.Hi, ExpertSlice = range.Slice, ExpertSlices = range.Slices, Copy = g.Copy,
        };
    }

    IEnumerable<GrainInfo> GrainsOfTheModel()
    {
        var stages = model.Stages;
        for (int r = 0; r < Math.Max(1, model.Options.Replicas); r++)
            yield return new GrainInfo { Key = new ReplicaKey(model.Name, r).ToString(), Kind = "replica", Replica = r };
        foreach (var key in model.ShardKeys())
        {
            yield return key switch
            {
                StageKey s => new GrainInfo
                {
                    Key = s.ToString(), Kind = "stage", Replica = s.Replica, LayerStart = stages[s.Stage].Start, LayerEnd = stages[s.Stage].End,
                },
                ExpertGroupKey g => ExpertGroupInfo(g),
                _ => throw new InvalidOperationException($"{key} is not a stage or an expert group"),
            };
        }
    }

    /// <summary>Fills in where the grain runs; a stage adds the copies of its groups that serve now to <paramref name="copies"/>.</summary>
    async Task<GrainInfo> DescribeAsync(GrainInfo info, HashSet<ExpertGroupKey> copies, CancellationToken cancellationToken)
    {
        try
        {
            switch (ModelGrainKey.Parse(info.Key))
            {
                case ReplicaKey r:
                    var stats = await grains.GetReplica(r).Stats().WaitAsync(cancellationToken);
                    info.Silo = stats.SiloName;
                    info.Loaded = true;
                    info.Calls = stats.Steps;
                    break;
                case StageKey s:
                    var host = await grains.GetStage(s).Host().WaitAsync(cancellationToken);
                    Fill(info, host);
                    lock (copies)
                    {
                        for (int g = 0; g < (host.Copies?.Length ?? 0); g++)
                            for (int c = 1; c <= host.Copies![g]; c++) copies.Add(s.ExpertGroup(g).WithCopy(c));
                    }
                    break;
                case ExpertGroupKey g:
                    Fill(info, await grains.GetExpertGroup(g).Host().WaitAsync(cancellationToken));
                    break;
            }
        }
        catch (Exception e) when (ClusterFaults.AsRequestError(e) is { } error)
        {
            info.Error = error.Message;
        }
        return info;
    }

    static void Fill(GrainInfo info, ShardHost host)
    {
        info.Silo = host.SiloName;
        info.Loaded = host.Loaded;
        info.Calls = host.Calls;
        info.RoutedTokens = host.RoutedTokens;
        info.HandedOver = host.HandedOver;
    }
}
