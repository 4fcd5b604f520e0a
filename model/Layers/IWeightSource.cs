using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>Where a module's weights come from: a checkpoint, or empty tensors on the meta device for shape checks.</summary>
public interface IWeightSource
{
    Device Device { get; }

    /// <summary>The tensor stored under <paramref name="name"/>, which must have <paramref name="shape"/>; float32.</summary>
    Tensor Load(string name, params long[] shape);

    bool Contains(string name);
}
