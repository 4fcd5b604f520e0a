namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>A checkpoint that cannot be loaded; the message names the file and, where there is one, the tensor.</summary>
public sealed class CheckpointException(string message, Exception? inner = null) : Exception(message, inner);
