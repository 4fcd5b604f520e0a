namespace Qwen3Cluster.Model.Tokenization;

/// <summary>A tokenizer file is missing, malformed, or asks for a feature this tokenizer does not implement.</summary>
public sealed class TokenizerFormatException : FormatException
{
    public TokenizerFormatException(string file, string field, string problem, Exception? inner = null)
        : base($"{file}: field '{field}' {problem}", inner)
    {
        File = file;
        Field = field;
    }

    /// <summary>The file name (not the full path) that holds the bad field.</summary>
    public string File { get; }

    /// <summary>A JSON path such as <c>model.merges[12]</c>.</summary>
    public string Field { get; }
}
