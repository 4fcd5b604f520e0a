namespace Qwen3Cluster.Grains.Placement;

/// <summary>What a silo announces in its metadata: its name in the plan, its roles and its device.</summary>
public sealed record SiloDescriptor(string Name, IReadOnlySet<string> Roles, string Device)
{
    public const string NameKey = "Qwen3Name";
    public const string RolesKey = "Qwen3Roles";
    public const string DeviceKey = "Qwen3Device";

    public Dictionary<string, string> ToMetadata() => new()
    {
        [NameKey] = Name,
        [RolesKey] = string.Join(',', Roles.Order(StringComparer.Ordinal)),
        [DeviceKey] = Device,
    };

    public static SiloDescriptor? FromMetadata(IReadOnlyDictionary<string, string> metadata) =>
        metadata.TryGetValue(NameKey, out var name) && metadata.TryGetValue(RolesKey, out var roles)
            ? new SiloDescriptor(name, roles.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(),
                metadata.GetValueOrDefault(DeviceKey, "cpu"))
            : null;
}
