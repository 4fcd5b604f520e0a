namespace Qwen3Cluster.Model.Constraints;

/// <summary>A constraint that cannot be compiled: a regex or schema feature not supported, or a malformed one. <see cref="Path"/> names where.</summary>
public sealed class GrammarException(string message, string? path = null) : Exception(message)
{
    /// <summary>Where in the schema (a JSON pointer such as <c>properties.age</c>), or null for the whole constraint.</summary>
    public string? Path { get; } = path;
}
