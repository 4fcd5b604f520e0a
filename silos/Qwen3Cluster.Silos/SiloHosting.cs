using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using Orleans.Dashboard;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.DataPlane;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;

namespace Qwen3Cluster.Silos;

/// <summary>Turns a generic Orleans silo into a Qwen3Cluster silo from the <c>Qwen3</c> configuration section.</summary>
public static class SiloHosting
{
    /// <summary>Large enough for a step's hidden states or logits; well under what a silo can hold.</summary>
    public const int MaxMessageBodyBytes = 512 * 1024 * 1024;

    /// <summary>How long the qwen3 process lets a command finish after SIGTERM or Ctrl-C: a silo's leave and shutdown fit in it.</summary>
    public static readonly TimeSpan ProcessTerminationTimeout = TimeSpan.FromMinutes(5);

    public static ISiloBuilder AddQwen3(this ISiloBuilder silo, IConfiguration configuration, bool configureClustering = true)
    {
        var section = configuration.GetSection("Qwen3");
        var model = section.GetSection("Model").Get<ModelOptions>() ?? new ModelOptions();
        var roles = section.GetSection("Silo").Get<SiloRoleOptions>() ?? new SiloRoleOptions();
        var pins = section.GetSection("Placement").Get<Dictionary<string, string>>() ?? [];
        var hotExperts = section.GetSection("HotExperts").Get<HotExpertOptions>() ?? new HotExpertOptions();
        hotExperts.Validate();
        var unknown = roles.Roles.Except(SiloRoleOptions.AllRoles).ToList();
        if (unknown.Count > 0)
            throw new InvalidOperationException($"Qwen3:Silo:Roles has unknown role(s) {string.Join(", ", unknown)}; known: {string.Join(", ", SiloRoleOptions.AllRoles)}.");

        silo.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(model));
        silo.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(roles));
        silo.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(hotExperts));
        silo.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(
            section.GetSection("Telemetry").Get<TelemetryOptions>() ?? new TelemetryOptions()));
        silo.Services.AddSingleton<SiloMetrics>();
        silo.Services.AddHostedService(sp => sp.GetRequiredService<SiloMetrics>());
        if (roles.DataPort is < -1 or > 65535)
            throw new InvalidOperationException($"Qwen3:Silo:DataPort is {roles.DataPort}: 0 for any free port, -1 for none, or a port up to 65535.");
        silo.Services.AddSingleton<ExpertDataPlane>();
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<ExpertDataPlane>());
        silo.Services.AddSingleton<ExpertDataPlaneClient>();
        silo.Services.AddSingleton<ModelDeployment>();
        silo.Services.AddSingleton<ShardLoader>();
        silo.Services.AddHostedService<PlanKeeper>();
        silo.Services.AddHostedService<ComputeThreadsSetup>();
        silo.Services.AddSingleton(new ClusterPlan(pins, model));
        silo.Services.AddPlacementDirector<PlannedPlacementStrategy, PlannedPlacementDirector>();
        silo.UseSiloMetadata(new SiloDescriptor(roles.Name, roles.EffectiveRoles, roles.Device).ToMetadata());
        silo.Services.PostConfigure<SiloOptions>(o => o.SiloName = roles.Name);
        silo.Configure<SiloMessagingOptions>(o =>
        {
            o.MaxMessageBodySize = MaxMessageBodyBytes;
            o.ResponseTimeout = TimeSpan.FromMinutes(5);
        });
        silo.Configure<GrainCollectionOptions>(o => o.CollectionAge = TimeSpan.FromHours(2));
        silo.AddActivityPropagation();
        // The grain directory that stays right when a silo dies: its ranges are recovered from the silos that hold
        // the activations, so the grains on the silos left (a replica's decode loop with its streams, a stage with
        // its KV pool) keep their one activation instead of being lost with the dead silo's directory partition.
#pragma warning disable ORLEANSEXP003
        silo.AddDistributedGrainDirectory();
#pragma warning restore ORLEANSEXP003
        var clustering = section.GetSection("Clustering").Get<ClusteringOptions>() ?? new ClusteringOptions();
        if (clustering.LeaveTimeoutSeconds < 0 || TimeSpan.FromSeconds(clustering.LeaveTimeoutSeconds + 30) > ProcessTerminationTimeout)
        {
            throw new InvalidOperationException(
                $"Qwen3:Clustering:LeaveTimeoutSeconds must be 0 to {(ProcessTerminationTimeout - TimeSpan.FromSeconds(30)).TotalSeconds} (the qwen3 process gives its shutdown {ProcessTerminationTimeout.TotalMinutes} minutes).");
        }
        var leave = TimeSpan.FromSeconds(clustering.LeaveTimeoutSeconds);
        silo.Services.AddSingleton(sp => ActivatorUtilities.CreateInstance<SiloDeparture>(sp, leave));
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<SiloDeparture>());
        silo.Services.Configure<HostOptions>(o =>
        {
            if (o.ShutdownTimeout < leave + TimeSpan.FromSeconds(30)) o.ShutdownTimeout = leave + TimeSpan.FromSeconds(30);
        });
        var sessions = section.GetSection("Sessions").Get<SessionStorageOptions>() ?? new SessionStorageOptions();
        silo.AddSessionStorage(sessions, configureClustering ? clustering : null);
        if (configureClustering) silo.UseClustering(clustering);
        return silo;
    }

    /// <summary>
    /// Where session state lives (<c>Qwen3:Sessions:Storage</c>): in the membership store when there is a real one
    /// (Redis or PostgreSQL), so a session outlives the silo that held it; in memory on localhost clustering.
    /// </summary>
    public static ISiloBuilder AddSessionStorage(this ISiloBuilder silo, SessionStorageOptions sessions, ClusteringOptions? clustering)
    {
        string provider = clustering?.Provider.ToLowerInvariant() is "kubernetes" ? clustering.Store : clustering?.Provider ?? "Memory";
        string storage = sessions.Storage.Equals("auto", StringComparison.OrdinalIgnoreCase)
            ? provider.ToLowerInvariant() switch { "redis" => "redis", "adonet" or "postgres" or "postgresql" => "adonet", _ => "memory" }
            : sessions.Storage.ToLowerInvariant();
        string Connection() => Required(sessions.ConnectionString ?? clustering?.ConnectionString, "Qwen3:Sessions:ConnectionString");
        switch (storage)
        {
            case "memory":
                silo.AddMemoryGrainStorage(SessionStorage.Name);
                break;
            case "redis":
                silo.AddRedisGrainStorage(SessionStorage.Name, o =>
                {
                    o.ConfigurationOptions = StackExchange.Redis.ConfigurationOptions.Parse(Connection());
                    o.DeleteStateOnClear = true;
                    // A session the cluster lost track of (its silo died, nobody asked for it again) still goes.
                    o.EntryExpiry = SessionStorage.MaxTtl + TimeSpan.FromHours(1);
                });
                break;
            case "adonet" or "postgres" or "postgresql":
                string connection = Connection();
                silo.AddAdoNetGrainStorage(SessionStorage.Name, o =>
                {
                    o.Invariant = "Npgsql";
                    o.ConnectionString = connection;
                    o.DeleteStateOnClear = true;
                });
                if (clustering?.CreateSchema ?? true) silo.CreatePostgresSchema(connection, clustering: false, storage: true);
                break;
            default:
                throw new InvalidOperationException($"Qwen3:Sessions:Storage '{sessions.Storage}' is not one of auto, memory, redis, adonet.");
        }
        return silo;
    }

    public static ISiloBuilder UseClustering(this ISiloBuilder silo, ClusteringOptions options)
    {
        if (options.ProbeTimeoutSeconds <= 0 || options.MissedProbesLimit < 1)
            throw new InvalidOperationException("Qwen3:Clustering:ProbeTimeoutSeconds must be above 0 and MissedProbesLimit at least 1.");
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            o.ProbeTimeout = TimeSpan.FromSeconds(options.ProbeTimeoutSeconds);
            o.NumMissedProbesLimit = options.MissedProbesLimit;
        });
        silo.Configure<GrainDirectoryOptions>(o => o.RangeLeaseDuration = TimeSpan.FromSeconds(options.DirectoryLeaseSeconds));
        var advertised = options.AdvertisedAddress is { Length: > 0 } a ? IPAddress.Parse(a) : IPAddress.Loopback;
        switch (options.Provider.ToLowerInvariant())
        {
            case "localhost":
                silo.UseLocalhostClustering(options.SiloPort, options.GatewayPort,
                    options.PrimarySiloPort is int primary ? new IPEndPoint(IPAddress.Loopback, primary) : null,
                    options.ServiceId, options.ClusterId);
                return silo;
            case "redis":
                silo.UseRedisClustering(Required(options.ConnectionString, "Qwen3:Clustering:ConnectionString"));
                break;
            case "adonet" or "postgres" or "postgresql":
                string connection = Required(options.ConnectionString, "Qwen3:Clustering:ConnectionString");
                silo.UseAdoNetClustering(o =>
                {
                    o.Invariant = "Npgsql";
                    o.ConnectionString = connection;
                });
                if (options.CreateSchema) silo.CreatePostgresSchema(connection, clustering: true, storage: false);
                break;
            case "kubernetes":
                silo.UseClustering(options with { Provider = options.Store });
                silo.UseKubernetesHosting();
                return silo;
            default:
                throw new InvalidOperationException(
                    $"Qwen3:Clustering:Provider '{options.Provider}' is not one of Localhost, Redis, AdoNet, Kubernetes.");
        }
        silo.Configure<ClusterOptions>(o =>
        {
            o.ClusterId = options.ClusterId;
            o.ServiceId = options.ServiceId;
        });
        silo.ConfigureEndpoints(advertised, options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: options.AdvertisedAddress is { Length: > 0 });
        return silo;
    }

    /// <summary>Creates Orleans' PostgreSQL tables that are missing (<see cref="PostgresSchema"/>) before the silo starts its runtime.</summary>
    static void CreatePostgresSchema(this ISiloBuilder silo, string connectionString, bool clustering, bool storage) =>
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => new PostgresSchemaSetup(connectionString, clustering, storage,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(PostgresSchema))));

    sealed class PostgresSchemaSetup(string connectionString, bool clustering, bool storage, ILogger logger) : ILifecycleParticipant<ISiloLifecycle>
    {
        public void Participate(ISiloLifecycle lifecycle) => lifecycle.Subscribe(nameof(PostgresSchemaSetup), ServiceLifecycleStage.RuntimeInitialize - 1,
            ct => PostgresSchema.EnsureAsync(connectionString, clustering, storage, logger, ct));
    }

    static string Required(string? value, string name) =>
        string.IsNullOrWhiteSpace(value) ? throw new InvalidOperationException($"{name} is required for this clustering provider.") : value;
}
