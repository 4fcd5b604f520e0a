using Qwen3Cluster.Grains.Hosting;

namespace Qwen3Cluster.Grains.Placement;

/// <summary>
/// Which silo hosts each grain of the model. A pin from configuration (<c>Qwen3:Placement</c>, grain key -> silo
/// name) wins while that silo is present with the right role; otherwise the plan is derived from the silos present,
/// sorted by name: stage s of replica r on the stage silos, expert group g of stage s on the experts silos (or the
/// stage silos when none has that role), spread round-robin. Copy c of a hot expert group goes to the c-th eligible
/// silo after the group's own, never on the group's silo: with fewer eligible silos there is no place for it. The
/// same silos give the same plan on every silo.
/// </summary>
public sealed class ClusterPlan(IReadOnlyDictionary<string, string> pins, ModelOptions model)
{
    /// <summary>The role a grain of this key needs.</summary>
    public static string RoleFor(ModelGrainKey key) => key switch
    {
        StageKey => SiloRoleOptions.Stage,
        ExpertGroupKey => SiloRoleOptions.Experts,
        _ => SiloRoleOptions.Gateway,
    };

    /// <summary>The silo (by name) that should host <paramref name="key"/>, or null when no present silo can.</summary>
    public string? SiloFor(ModelGrainKey key, IReadOnlyList<SiloDescriptor> present)
    {
        if (key is ExpertGroupKey { Copy: > 0 } copy) return SiloForCopy(copy, present);
        string role = RoleFor(key);
        if (pins.TryGetValue(key.ToString(), out var pinned) && present.Any(s => s.Name == pinned && s.Roles.Contains(role))) return pinned;
        var eligible = Eligible(present, role);
        if (eligible.Count == 0 && role == SiloRoleOptions.Experts) eligible = Eligible(present, SiloRoleOptions.Stage);
        if (eligible.Count == 0) return null;
        int slot = key switch
        {
            StageKey s => s.Replica * model.Stages + s.Stage,
            ExpertGroupKey g => g.Stage * model.ExpertGroupGrains + g.Group,
            ReplicaKey r => r.Replica,
            _ => 0,
        };
        return eligible[slot % eligible.Count].Name;
    }

    string? SiloForCopy(ExpertGroupKey copy, IReadOnlyList<SiloDescriptor> present)
    {
        string? primary = SiloFor(copy.Primary, present);
        if (primary is null) return null;
        var eligible = Eligible(present, SiloRoleOptions.Experts);
        if (eligible.Count == 0) eligible = Eligible(present, SiloRoleOptions.Stage);
        var others = eligible.Where(s => s.Name != primary).ToList();
        if (copy.Copy > others.Count) return null;
        int slot = copy.Stage * model.ExpertGroupGrains + copy.Group;
        return others[(slot + copy.Copy - 1) % others.Count].Name;
    }

    static List<SiloDescriptor> Eligible(IReadOnlyList<SiloDescriptor> present, string role) =>
        present.Where(s => s.Roles.Contains(role)).OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
}
