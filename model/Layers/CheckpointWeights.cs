using Qwen3Cluster.Model.Checkpoint;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>Weights read from a checkpoint and converted to float32 on a device.</summary>
public sealed class CheckpointWeights(CheckpointReader reader, Device device, IProgress<string>? progress = null) : IWeightSource
{
    public Device Device => device;

    public Tensor Load(string name, params long[] shape)
    {
        progress?.Report(name);
        return reader.Load(name, shape, ScalarType.Float32, device);
    }

    public bool Contains(string name) => reader.Contains(name);
}
