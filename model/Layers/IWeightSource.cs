using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>Where a module's weights come from: a checkpoint, or empty tensors on the meta device for shape checks.</summary>
public interface IWeightSource
{
    Device Device { get; }

    /// <summary>The tensor stored under <paramref name="name"/>, which must have <paramref name="shape"/>; float32.</summary>
    Tensor Load(string name, params long[] shape);

    /// <summary>
    /// A weight matrix [rows, cols] that products read, at the width it stays resident in: by default float32; a
    /// checkpoint keeps bfloat16 as bfloat16 and can quantise to Q8_0 (see <see cref="CheckpointWeights"/>).
    /// </summary>
    Tensor LoadMatrix(string name, long rows, long cols) => Load(name, rows, cols);

    /// <summary>
    /// The matrices [rows, cols] stored under <paramref name="names"/>, stacked [n, rows, cols] (a group's experts) at
    /// the width <see cref="LoadMatrix"/> gives them; each slot a matrix the kernels read.
    /// </summary>
    Tensor LoadStacked(IReadOnlyList<string> names, long rows, long cols)
    {
        Tensor? stacked = null;
        for (int e = 0; e < names.Count; e++)
        {
            using var w = LoadMatrix(names[e], rows, cols);
            stacked ??= empty([names.Count, .. w.shape], w.dtype, Device);
            using var slot = stacked[e];
            if (Device.type != TorchSharp.DeviceType.META) slot.copy_(w);
        }
        return stacked!;
    }

    /// <summary>A table that is read by rows (the embedding): at the checkpoint's width, never quantised.</summary>
    Tensor LoadTable(string name, long rows, long cols) => Load(name, rows, cols);

    bool Contains(string name);
}
