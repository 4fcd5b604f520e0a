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
    /// the width <see cref="LoadMatrix"/> gives them; each slot a matrix the kernels read. With <paramref name="part"/>,
    /// only that part of each matrix ([part rows, cols] or [rows, part columns]): a slice of the experts.
    /// </summary>
    Tensor LoadStacked(IReadOnlyList<string> names, long rows, long cols, MatrixPart? part = null) => Stack(this, names, rows, cols, part);

    /// <summary>
    /// <see cref="LoadStacked"/> by <see cref="LoadMatrix"/> one matrix at a time, copied into its slot (an
    /// implementation that has a faster way for some devices calls this for the others).
    /// </summary>
    internal static Tensor Stack(IWeightSource source, IReadOnlyList<string> names, long rows, long cols, MatrixPart? part)
    {
        Tensor? stacked = null;
        for (int e = 0; e < names.Count; e++)
        {
            using var w = source.LoadMatrix(names[e], rows, cols);
            if (part is not null && w.dtype == ScalarType.Byte)
                throw new NotSupportedException($"{names[e]}: a part of a quantised matrix cannot be cut from its blocks; load it from the checkpoint.");
            using var piece = part is { } p ? w.narrow(p.Columns ? 1 : 0, p.From, p.Count) : w.alias();
            stacked ??= empty([names.Count, .. piece.shape], piece.dtype, source.Device);
            using var slot = stacked[e];
            if (source.Device.type != TorchSharp.DeviceType.META) slot.copy_(piece);
        }
        return stacked!;
    }

    /// <summary>A table that is read by rows (the embedding): at the checkpoint's width, never quantised.</summary>
    Tensor LoadTable(string name, long rows, long cols) => Load(name, rows, cols);

    bool Contains(string name);
}

/// <summary>Part of a stored matrix [rows, cols]: its rows [From, From + Count), or those columns when <see cref="Columns"/>.</summary>
public readonly record struct MatrixPart(bool Columns, long From, long Count)
{
    public static MatrixPart RowsOf(long from, long count) => new(false, from, count);
    public static MatrixPart ColumnsOf(long from, long count) => new(true, from, count);

    /// <summary>The part's shape in a matrix [rows, cols].</summary>
    public (long Rows, long Cols) Shape(long rows, long cols) => Columns ? (rows, Count) : (Count, cols);
}
