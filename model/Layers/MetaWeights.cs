using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Empty float32 tensors on the meta device, recording every name asked for: building a real config's model
/// from these checks shapes and names without allocating its weights.
/// </summary>
public sealed class MetaWeights : IWeightSource
{
    readonly Dictionary<string, long[]> _requested = new(StringComparer.Ordinal);

    public Device Device { get; } = new(DeviceType.META);
    public IReadOnlyDictionary<string, long[]> Requested => _requested;

    public Tensor Load(string name, params long[] shape)
    {
        _requested[name] = shape;
        return empty(shape, ScalarType.Float32, Device);
    }

    public bool Contains(string name) => true;
}
