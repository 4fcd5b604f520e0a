namespace Qwen3Cluster.Grains;

/// <summary>
/// The string keys of the model's grains: <c>{model}/{replica}/stage/{s}</c>, <c>{model}/experts/{s}/{g}</c>
/// and <c>{model}/{replica}</c> for the gateway. Placement reads them back to find a grain's planned silo.
/// </summary>
public static class GrainKeys
{
    public static string Stage(string model, int replica, int stage) => $"{model}/{replica}/stage/{stage}";
    public static string ExpertGroup(string model, int stage, int group) => $"{model}/experts/{stage}/{group}";
    public static string Gateway(string model, int replica) => $"{model}/{replica}";
    public static string SessionCache(string sessionId) => $"session:{sessionId}";

    /// <summary>
    /// What a key names: ("stage", model, replica, s, -1), ("experts", model, -1, s, g) or ("gateway", model, replica, -1, -1).
    /// Read from the end, so a model name may itself contain '/' (as Hugging Face ids do).
    /// </summary>
    public static (string Kind, string Model, int Replica, int Stage, int Group) Parse(string key)
    {
        var parts = key.Split('/');
        string Model(int suffix) => string.Join('/', parts[..^suffix]);
        if (parts.Length >= 4 && parts[^2] == "stage" && int.TryParse(parts[^3], out int r) && int.TryParse(parts[^1], out int s))
            return ("stage", Model(3), r, s, -1);
        if (parts.Length >= 4 && parts[^3] == "experts" && int.TryParse(parts[^2], out int es) && int.TryParse(parts[^1], out int g))
            return ("experts", Model(3), -1, es, g);
        if (parts.Length >= 2 && int.TryParse(parts[^1], out int gr)) return ("gateway", Model(1), gr, -1, -1);
        throw new FormatException($"'{key}' is not a Qwen3Cluster grain key.");
    }
}
