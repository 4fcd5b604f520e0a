using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>Runs the experts of one sparse layer for a batch of tokens; wherever they live.</summary>
public interface IExpertDispatcher
{
    /// <summary>x [T, D] with its routing -> the weighted sum of the chosen experts' outputs [T, D].</summary>
    ValueTask<Tensor> RunAsync(int layer, Tensor x, Routing routing, CancellationToken cancellationToken);
}
