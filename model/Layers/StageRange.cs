namespace Qwen3Cluster.Model.Layers;

/// <summary>Decoder layers [Start, End) of a model of <see cref="TotalLayers"/>: what one pipeline stage holds.</summary>
public readonly record struct StageRange(int Start, int End, int TotalLayers)
{
    public bool IsFirst => Start == 0;
    public bool IsLast => End == TotalLayers;
    public int Count => End - Start;

    /// <summary>L layers split into <paramref name="stages"/> contiguous ranges as evenly as possible.</summary>
    public static StageRange[] Split(int layers, int stages)
    {
        if (stages <= 0 || stages > layers)
            throw new ArgumentOutOfRangeException(nameof(stages), $"Cannot split {layers} layers into {stages} stages.");
        var ranges = new StageRange[stages];
        for (int s = 0; s < stages; s++)
            ranges[s] = new StageRange(layers * s / stages, layers * (s + 1) / stages, layers);
        return ranges;
    }

    /// <summary>The layers of this range that route to experts.</summary>
    public IEnumerable<int> SparseLayers(Config.Qwen3Config config) =>
        Enumerable.Range(Start, Count).Where(config.IsSparseLayer);

    public override string ToString() => $"layers [{Start}, {End}) of {TotalLayers}";
}
