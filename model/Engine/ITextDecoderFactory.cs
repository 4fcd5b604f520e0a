namespace Qwen3Cluster.Model.Engine;

/// <summary>Makes the text decoder of each sequence (the engine is given none for a checkpoint without a tokenizer).</summary>
public interface ITextDecoderFactory
{
    IIncrementalTextDecoder Create();
}
