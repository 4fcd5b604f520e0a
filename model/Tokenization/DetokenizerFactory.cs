using Qwen3Cluster.Model.Engine;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>The engine's per-sequence text decoders, backed by the checkpoint's tokenizer.</summary>
public sealed class DetokenizerFactory(Qwen3Tokenizer tokenizer, bool skipSpecialTokens) : ITextDecoderFactory
{
    public IIncrementalTextDecoder Create() => new Decoder(tokenizer.CreateDetokenizer(skipSpecialTokens));

    sealed class Decoder(IncrementalDetokenizer detokenizer) : IIncrementalTextDecoder
    {
        public string Push(int tokenId) => detokenizer.Push(tokenId);

        public string Flush() => detokenizer.Flush();
    }
}
