namespace Qwen3Cluster.Model.Config;

/// <summary>A config.json that cannot describe a Qwen3 model; the message names the file and the field.</summary>
public sealed class ModelConfigException(string message) : Exception(message);
