namespace Qwen3Cluster.Grains.Hosting;

/// <summary>
/// The model a cluster serves and how it is cut (configuration section <c>Qwen3:Model</c>). Every silo reads the
/// same section, so every silo derives the same plan.
/// </summary>
public sealed record ModelOptions
{
    /// <summary>The name clients use; defaults to the checkpoint folder's name.</summary>
    public string? Name { get; set; }
    /// <summary>The checkpoint folder, reachable at this path from every silo that hosts a part of the model.</summary>
    public string Path { get; set; } = "";
    public int Replicas { get; set; } = 1;
    public int Stages { get; set; } = 1;
    public int ExpertGroups { get; set; } = 1;
    /// <summary>
    /// Slices each expert group's experts are cut into along their intermediate size, each a group grain of its own
    /// (so a stage has ExpertGroups x ExpertSlices of them): every slice of a group computes its share of every token
    /// routed there, as tensor-parallel ranks share vLLM's MoE layers, where whole groups on different silos share a
    /// token's experts as its routing falls. The model's moe_intermediate_size must divide by it.
    /// </summary>
    public int ExpertSlices { get; set; } = 1;
    /// <summary>The expert-group grains of a stage: <see cref="ExpertGroups"/> x <see cref="ExpertSlices"/>.</summary>
    public int ExpertGroupGrains => ExpertGroups * Math.Max(1, ExpertSlices);
    public int KvBlocks { get; set; } = 2048;
    public int BlockSize { get; set; } = 16;
    public int MaxBatchTokens { get; set; } = 512;
    public int MaxSequences { get; set; } = 64;
    /// <summary>0 uses the model's max_position_embeddings.</summary>
    public int MaxModelLength { get; set; }
    /// <summary>"none" keeps the checkpoint's width; "int8" makes Q8_0 blocks of the matrices at load (CPU silos).</summary>
    public string Quantize { get; set; } = "none";
    /// <summary>
    /// Seconds a replica retries steps that fail (a silo died; its grains are being re-placed and reloaded) before
    /// its requests fail with UNAVAILABLE.
    /// </summary>
    public double RecoverySeconds { get; set; } = 30;

    public string ResolvedName => string.IsNullOrWhiteSpace(Name)
        ? System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(Path)))
        : Name;
}

/// <summary>This silo's identity in the plan (configuration section <c>Qwen3:Silo</c>).</summary>
public sealed record SiloRoleOptions
{
    public const string Gateway = "gateway";
    public const string Stage = "stage";
    public const string Experts = "experts";
    public static readonly string[] AllRoles = [Gateway, Stage, Experts];

    public string Name { get; set; } = Environment.MachineName;
    /// <summary>Empty means every role. (No default list here: configuration binding appends to defaults.)</summary>
    public string[] Roles { get; set; } = [];

    public IReadOnlySet<string> EffectiveRoles => (Roles.Length == 0 ? AllRoles : Roles).ToHashSet();
    /// <summary>"cpu" or "cuda:N": where this silo's tensors live.</summary>
    public string Device { get; set; } = "cpu";
    /// <summary>Threads for tensor work (the kernels' team and libtorch's pool); 0 keeps one per core.</summary>
    public int Threads { get; set; }
    /// <summary>
    /// The port this silo's expert groups take calls on over the experts' data plane: 0 any free port (announced
    /// through the grains), -1 none (every expert-group call through Orleans).
    /// </summary>
    public int DataPort { get; set; }
}
