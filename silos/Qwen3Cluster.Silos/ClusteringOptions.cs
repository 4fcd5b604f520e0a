namespace Qwen3Cluster.Silos;

/// <summary>
/// How silos find each other (configuration section <c>Qwen3:Clustering</c>). Localhost: development clustering
/// on loopback, the silo with no PrimarySiloPort holds the membership table. Redis and AdoNet (PostgreSQL): a real
/// membership store at ConnectionString. Kubernetes: Orleans' Kubernetes hosting on top of Redis or AdoNet.
/// </summary>
public sealed record ClusteringOptions
{
    public string Provider { get; set; } = "Localhost";
    public int SiloPort { get; set; } = 11111;
    public int GatewayPort { get; set; } = 30000;
    /// <summary>Localhost only: the silo port of the primary silo, for every silo but the primary.</summary>
    public int? PrimarySiloPort { get; set; }
    public string? ConnectionString { get; set; }
    /// <summary>With Kubernetes: the membership store underneath, Redis or AdoNet.</summary>
    public string Store { get; set; } = "Redis";
    public string ClusterId { get; set; } = "qwen3";
    public string ServiceId { get; set; } = "qwen3cluster";
    /// <summary>Address other silos reach this one at; loopback by default.</summary>
    public string? AdvertisedAddress { get; set; }
    /// <summary>
    /// How often a silo probes the others and how long it waits for an answer; a silo that misses
    /// <see cref="MissedProbesLimit"/> probes in a row is voted dead. A refused connection fails a probe at once,
    /// so a killed process is declared dead after about limit x timeout (6 s by default, a LAN's figures;
    /// Orleans' own 5 s x 3 suits a WAN). Requests in flight to it pause until then, and resume after.
    /// </summary>
    public double ProbeTimeoutSeconds { get; set; } = 2;
    public int MissedProbesLimit { get; set; } = 3;
    /// <summary>
    /// How long the grain directory refuses new activations of a dead silo's grains (Orleans' range lease: 30 s,
    /// less the failure-detection window, guards against a silo declared dead that still runs). 0 by default: the
    /// model's grains tolerate a brief second activation (an expert group is a pure function of its weights, a
    /// stage's pool generation tells the replica its cache is another's), and every second of lease is a second
    /// of pause for every stream after a silo dies.
    /// </summary>
    public double DirectoryLeaseSeconds { get; set; }
    /// <summary>
    /// How long a silo that stops gracefully waits for the other silos to take over its stages and expert groups
    /// (they preload the weights, then the grains migrate). The host's shutdown timeout is raised to fit it; a
    /// Kubernetes pod's terminationGracePeriodSeconds must too.
    /// </summary>
    public double LeaveTimeoutSeconds { get; set; } = 60;
    /// <summary>AdoNet (PostgreSQL): create Orleans' tables where they are missing, from its own scripts (Sql/).</summary>
    public bool CreateSchema { get; set; } = true;
}

/// <summary>
/// Where sessions keep their state (configuration section <c>Qwen3:Sessions</c>). Storage: auto (the membership
/// store when it is Redis or PostgreSQL, memory otherwise), memory, redis or adonet (PostgreSQL, which needs
/// Orleans' PostgreSQL-Persistence.sql). ConnectionString defaults to the clustering one.
/// </summary>
public sealed record SessionStorageOptions
{
    public string Storage { get; set; } = "auto";
    public string? ConnectionString { get; set; }
}
