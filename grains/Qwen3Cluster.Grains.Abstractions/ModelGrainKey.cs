namespace Qwen3Cluster.Grains;

/// <summary>
/// The key of one of a served model's grains, typed. Its string form (<see cref="ToString"/>) is the grain's primary
/// key: <c>{model}/{replica}</c> for a replica, <c>{model}/{replica}/stage/{s}</c> for a stage and
/// <c>{model}/experts/{s}/{g}</c> for an expert group, and <c>{model}/experts/{s}/{g}/copy/{c}</c> for copy c of a hot
/// group. Placement reads a key back with <see cref="Parse"/>.
/// </summary>
public abstract record ModelGrainKey(string Model)
{
    /// <summary>Reads a grain's primary key back, from the end, so a model name may itself contain '/' (as Hugging Face ids do).</summary>
    public static ModelGrainKey Parse(string key)
    {
        var parts = key.Split('/');
        string Model(int suffix) => string.Join('/', parts[..^suffix]);
        if (parts.Length >= 4 && parts[^2] == "stage" && int.TryParse(parts[^3], out int r) && int.TryParse(parts[^1], out int s))
            return new StageKey(Model(3), r, s);
        if (parts.Length >= 4 && parts[^3] == "experts" && int.TryParse(parts[^2], out int es) && int.TryParse(parts[^1], out int g))
            return new ExpertGroupKey(Model(3), es, g);
        if (parts.Length >= 6 && parts[^5] == "experts" && parts[^2] == "copy" && int.TryParse(parts[^4], out int cs)
            && int.TryParse(parts[^3], out int cg) && int.TryParse(parts[^1], out int copy) && copy > 0)
        {
            return new ExpertGroupKey(Model(5), cs, cg, copy);
        }
        if (parts.Length >= 2 && int.TryParse(parts[^1], out int replica)) return new ReplicaKey(Model(1), replica);
        throw new FormatException($"'{key}' is not a Qwen3Cluster grain key.");
    }

    public static T Parse<T>(string key) where T : ModelGrainKey =>
        Parse(key) as T ?? throw new FormatException($"'{key}' is not the key of a {typeof(T).Name[..^3]}.");
}

/// <summary>Replica <see cref="Replica"/> of a model: its scheduler and decode loop.</summary>
public sealed record ReplicaKey(string Model, int Replica) : ModelGrainKey(Model)
{
    public StageKey Stage(int stage) => new(Model, Replica, stage);

    public override string ToString() => $"{Model}/{Replica}";
}

/// <summary>Pipeline stage <see cref="Stage"/> of replica <see cref="Replica"/>.</summary>
public sealed record StageKey(string Model, int Replica, int Stage) : ModelGrainKey(Model)
{
    public ExpertGroupKey ExpertGroup(int group) => new(Model, Stage, group);

    public override string ToString() => $"{Model}/{Replica}/stage/{Stage}";
}

/// <summary>
/// Expert group <see cref="Group"/> of stage <see cref="Stage"/>'s sparse layers, shared by every replica. Copy 0 is
/// the group itself; copies 1.. are the extra activations a hot group gets on other silos (same weights, a share
/// of its tokens).
/// </summary>
public sealed record ExpertGroupKey(string Model, int Stage, int Group, int Copy = 0) : ModelGrainKey(Model)
{
    /// <summary>The group this is a copy of (itself for copy 0).</summary>
    public ExpertGroupKey Primary => this with { Copy = 0 };

    public ExpertGroupKey WithCopy(int copy) => this with { Copy = copy };

    public override string ToString() => Copy == 0 ? $"{Model}/experts/{Stage}/{Group}" : $"{Model}/experts/{Stage}/{Group}/copy/{Copy}";
}

/// <summary>The key a session's KV cache is parked under in its replica between turns.</summary>
public static class SessionCache
{
    public static string Key(string sessionId) => $"session:{sessionId}";
}
