namespace Qwen3Cluster.Model.Engine;

/// <summary>Turns a stream of token ids into text, one delta per token, never splitting a character.</summary>
public interface IIncrementalTextDecoder
{
    string Push(int tokenId);
    string Flush();
}
