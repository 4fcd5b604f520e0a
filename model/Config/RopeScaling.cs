using System.Text.Json;

namespace Qwen3Cluster.Model.Config;

/// <summary>The <c>rope_scaling</c> (or <c>rope_parameters</c>) block of config.json.</summary>
public sealed record RopeScaling(
    string RopeType,
    double? Factor,
    int? OriginalMaxPositionEmbeddings,
    double? AttentionFactor,
    double? BetaFast,
    double? BetaSlow,
    double? Mscale,
    double? MscaleAllDim,
    bool Truncate)
{
    public static readonly string[] SupportedTypes = ["default", "linear", "dynamic", "yarn"];

    internal static RopeScaling? Parse(JsonElement element, string file, string field)
    {
        if (element.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return null;
        if (element.ValueKind != JsonValueKind.Object)
            throw new ModelConfigException($"{file}: '{field}' must be an object or null.");
        var type = element.TryGetProperty("rope_type", out var t) ? t.GetString()
            : element.TryGetProperty("type", out var legacy) ? legacy.GetString() : null;
        type ??= "default";
        if (!SupportedTypes.Contains(type))
        {
            throw new ModelConfigException(
                $"{file}: '{field}.rope_type' is '{type}'; supported: {string.Join(", ", SupportedTypes)}.");
        }

        var scaling = new RopeScaling(
            type,
            Number(element, "factor"),
            (int?)Number(element, "original_max_position_embeddings"),
            Number(element, "attention_factor"),
            Number(element, "beta_fast"),
            Number(element, "beta_slow"),
            Number(element, "mscale"),
            Number(element, "mscale_all_dim"),
            !element.TryGetProperty("truncate", out var tr) || tr.ValueKind != JsonValueKind.False);
        if (type is "linear" or "dynamic" && scaling.Factor is null)
            throw new ModelConfigException($"{file}: '{field}.factor' is required for rope_type '{type}'.");
        if (type == "yarn" && scaling.Factor is null && scaling.OriginalMaxPositionEmbeddings is null)
        {
            throw new ModelConfigException(
                $"{file}: '{field}.factor' (or 'original_max_position_embeddings') is required for rope_type 'yarn'.");
        }

        return scaling;
    }

    static double? Number(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
}
