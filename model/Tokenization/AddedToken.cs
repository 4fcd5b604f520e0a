namespace Qwen3Cluster.Model.Tokenization;

/// <summary>An entry of tokenizer.json's <c>added_tokens</c>: matched as a whole before BPE runs.</summary>
/// <param name="Normalized">True when the token is matched in normalized (NFC) text instead of the raw input.</param>
/// <param name="LStrip">Whitespace to the left of a match is swallowed by the token.</param>
/// <param name="RStrip">Whitespace to the right of a match is swallowed by the token.</param>
public sealed record AddedToken(
    int Id,
    string Content,
    bool Special,
    bool Normalized = false,
    bool LStrip = false,
    bool RStrip = false);
