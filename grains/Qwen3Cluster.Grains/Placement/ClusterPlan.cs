using Qwen3Cluster.Grains.Hosting;

namespace Qwen3Cluster.Grains.Placement;

/// <summary>
/// Which silo hosts each grain of the model. A pin from configuration (<c>Qwen3:Placement</c>, grain key -> silo
/// name) wins while that silo is present with the right role; otherwise the plan is derived from the silos present,
/// sorted by name: stage s of replica r on the stage silos, expert group g of stage s on the experts silos (or the
/// stage silos when none has that role), spread round-robin. The same silos give the same plan on every silo.
/// </summary>
public sealed class ClusterPlan(IReadOnlyDictionary<string, string> pins, ModelOptions model)
{
    public IReadOnlyDictionary<string, string> Pins => pins;

    /// <summary>The role a grain of this key needs.</summary>
    public static string RoleFor(string key) => GrainKeys.Parse(key).Kind switch
    {
        "stage" => SiloRoleOptions.Stage,
        "experts" => SiloRoleOptions.Experts,
        _ => SiloRoleOptions.Gateway,
    };

    /// <summary>The silo (by name) that should host <paramref name="key"/>, or null when no present silo can.</summary>
    public string? SiloFor(string key, IReadOnlyList<SiloDescriptor> present)
    {
        string role = RoleFor(key);
        if (pins.TryGetValue(key, out var pinned) && present.Any(s => s.Name == pinned && s.Roles.Contains(role))) return pinned;
        var (kind, _, replica, stage, group) = GrainKeys.Parse(key);
        var eligible = Eligible(present, role);
        if (eligible.Count == 0 && role == SiloRoleOptions.Experts) eligible = Eligible(present, SiloRoleOptions.Stage);
        if (eligible.Count == 0) return null;
        int slot = kind switch
        {
            "stage" => replica * model.Stages + stage,
            "experts" => stage * model.ExpertGroups + group,
            _ => replica,
        };
        return eligible[slot % eligible.Count].Name;
    }

    static List<SiloDescriptor> Eligible(IReadOnlyList<SiloDescriptor> present, string role) =>
        present.Where(s => s.Roles.Contains(role)).OrderBy(s => s.Name, StringComparer.Ordinal).ToList();

    /// <summary>Every grain key of the model with its planned silo: what the gateway warms up and tests check.</summary>
    public IReadOnlyList<(string Key, string? Silo)> Layout(string modelName, bool hasExperts, IReadOnlyList<SiloDescriptor> present)
    {
        var keys = new List<string>();
        for (int r = 0; r < model.Replicas; r++)
        {
            keys.Add(GrainKeys.Gateway(modelName, r));
            for (int s = 0; s < model.Stages; s++) keys.Add(GrainKeys.Stage(modelName, r, s));
        }
        if (hasExperts)
            for (int s = 0; s < model.Stages; s++)
                for (int g = 0; g < model.ExpertGroups; g++) keys.Add(GrainKeys.ExpertGroup(modelName, s, g));
        return keys.Select(k => (k, SiloFor(k, present))).ToList();
    }
}
