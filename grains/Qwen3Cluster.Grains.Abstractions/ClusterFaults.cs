using Orleans.Runtime;
using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Grains;

/// <summary>No silo in the cluster has the role a grain needs (every experts silo is gone, say).</summary>
[GenerateSerializer, Alias("qwen3.MissingRoleException")]
public sealed class MissingRoleException : OrleansException
{
    public MissingRoleException(string role, string grain)
        : base($"no silo with the '{role}' role is in the cluster to host {grain}")
    {
        Role = role;
        Grain = grain;
    }

    [Id(0)] public string Role { get; }
    [Id(1)] public string Grain { get; }
}

/// <summary>What a client is told when the cluster, not its request, failed it: UNAVAILABLE (HTTP 503), never UNKNOWN.</summary>
public static class ClusterFaults
{
    /// <summary>The <see cref="RequestError"/> for a failure of the cluster's own machinery, or null for any other exception.</summary>
    public static RequestError? AsRequestError(Exception error) => error switch
    {
        RequestError e => e,
        MissingRoleException e => new RequestError(ErrorKind.Unavailable, null, e.Message),
        SiloUnavailableException or OrleansMessageRejectionException or TimeoutException
            => new RequestError(ErrorKind.Unavailable, null, $"the cluster could not reach a silo: {error.Message}"),
        OrleansException e when e.InnerException is MissingRoleException inner => AsRequestError(inner),
        _ => null,
    };
}
