using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Engine;

/// <summary>Runs one step of the whole model, wherever its stages live.</summary>
public interface IModelExecutor
{
    /// <summary>Input ids [T] of the packed slices -> logits [LogitRows, V].</summary>
    ValueTask<Tensor> ExecuteAsync(ForwardContext context, int[] inputIds, CancellationToken cancellationToken);
}

/// <summary>Thrown by an executor when a stage's KV pool is not the one the scheduler's bookkeeping describes.</summary>
public sealed class KvCacheLostException(string message) : Exception(message);
