using System.Buffers;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// The Qwen3 tokenizer, built from a model folder's tokenizer.json and tokenizer_config.json. Gives the ids
/// HF tokenizers gives: added tokens are cut out of the raw text first, the rest is NFC-normalized, split with
/// the pre-tokenizer regex and byte-level BPE encoded. Thread-safe.
/// </summary>
public sealed class Qwen3Tokenizer
{
    readonly BpeTokenizer _bpe;
    readonly AddedTokenSplitter _rawSplitter;
    readonly AddedTokenSplitter? _normalizedSplitter;
    readonly NormalizationForm? _normalization;
    readonly Dictionary<string, int> _tokenToId;
    readonly string?[] _idToToken;
    readonly byte[]?[] _idToBytes;
    readonly bool[] _isSpecial;

    Qwen3Tokenizer(TokenizerDefinition definition)
    {
        AddedTokens = definition.AddedTokens;
        _normalization = definition.Normalization;
        _tokenToId = new Dictionary<string, int>(definition.Vocab, StringComparer.Ordinal);

        int maxId = Math.Max(definition.Vocab.Values.Max(), AddedTokens.Count == 0 ? -1 : AddedTokens.Max(t => t.Id));
        VocabSize = maxId + 1;
        _idToToken = new string?[VocabSize];
        _idToBytes = new byte[]?[VocabSize];
        _isSpecial = new bool[VocabSize];
        foreach ((string token, int id) in definition.Vocab)
        {
            if (_idToToken[id] is not null)
            {
                throw new TokenizerFormatException(TokenizerDefinition.TokenizerFile, $"model.vocab[\"{token}\"]", $"reuses id {id}");
            }

            if (!ByteLevelAlphabet.TryGetBytes(token, out byte[] bytes))
            {
                throw new TokenizerFormatException(TokenizerDefinition.TokenizerFile, $"model.vocab[\"{token}\"]", "has a character outside the byte-level alphabet");
            }

            _idToToken[id] = token;
            _idToBytes[id] = bytes;
        }

        for (int b = 0; b < 256; b++)
        {
            // Without every single-byte token, BPE would silently drop the bytes it cannot spell.
            if (!definition.Vocab.ContainsKey(ByteLevelAlphabet.ToChar((byte)b).ToString()))
            {
                throw new TokenizerFormatException(TokenizerDefinition.TokenizerFile, "model.vocab", $"lacks the single-byte token for byte 0x{b:X2}");
            }
        }

        foreach (AddedToken token in AddedTokens)
        {
            _tokenToId[token.Content] = token.Id;
            _idToToken[token.Id] = token.Content;
            _isSpecial[token.Id] = token.Special;

            // HF's ByteLevel decoder reads a token through the byte alphabet when it can, else as UTF-8.
            _idToBytes[token.Id] = ByteLevelAlphabet.TryGetBytes(token.Content, out byte[] bytes)
                ? bytes
                : Encoding.UTF8.GetBytes(token.Content);
        }

        _rawSplitter = new AddedTokenSplitter(AddedTokens.Where(t => !t.Normalized));
        if (AddedTokens.Any(t => t.Normalized)) _normalizedSplitter = new AddedTokenSplitter(AddedTokens.Where(t => t.Normalized));

        _bpe = CreateBpe(definition);

        EosTokenId = RequireKnown(definition.EosToken, "eos_token");
        PadTokenId = RequireKnown(definition.PadToken, "pad_token");
        BosTokenId = RequireKnown(definition.BosToken, "bos_token");
        EosTokenIds = EosTokenId is int eos ? [eos] : [];
        ChatTemplateSource = definition.ChatTemplate;
    }

    /// <summary>One past the highest token id, added tokens included (the id space a model's logits cover at least).</summary>
    public int VocabSize { get; }

    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>tokenizer_config.json's <c>eos_token</c> (<c>&lt;|im_end|&gt;</c> for Qwen3).</summary>
    public int? EosTokenId { get; }

    /// <summary>Ids that end generation according to tokenizer_config.json (generation_config.json may add more).</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    public int? PadTokenId { get; }

    public int? BosTokenId { get; }

    /// <summary>The raw Jinja source of tokenizer_config.json's <c>chat_template</c>, if any.</summary>
    public string? ChatTemplateSource { get; }

    public static Qwen3Tokenizer Load(string modelDir)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        return new Qwen3Tokenizer(TokenizerDefinition.Load(modelDir));
    }

    /// <summary>Encodes text with no BOS/EOS added (Qwen3 adds none). Lone surrogates are encoded as U+FFFD.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = ReplaceLoneSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 4);
        foreach (TextSegment raw in _rawSplitter.Split(text, 0, text.Length))
        {
            if (!raw.IsText)
            {
                ids.Add(raw.TokenId);
                continue;
            }

            string normalized = Normalize(text.Substring(raw.Start, raw.Length));
            if (_normalizedSplitter is null)
            {
                EncodeText(normalized, ids);
                continue;
            }

            foreach (TextSegment inner in _normalizedSplitter.Split(normalized, 0, normalized.Length))
            {
                if (inner.IsText) EncodeText(normalized.Substring(inner.Start, inner.Length), ids);
                else ids.Add(inner.TokenId);
            }
        }

        return ids.ToArray();
    }

    /// <summary>
    /// Decodes ids to text. Invalid UTF-8 byte sequences become U+FFFD (HF's <c>errors="replace"</c>); ids the
    /// tokenizer does not know are skipped, as HF does.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new ArrayBufferWriter<byte>(256);
        foreach (int id in ids)
        {
            if (!(skipSpecialTokens && IsSpecial(id))) bytes.Write(GetTokenBytes(id));
        }

        return Encoding.UTF8.GetString(bytes.WrittenSpan);
    }

    /// <summary>A detokenizer for streaming output one token at a time.</summary>
    public IncrementalDetokenizer CreateDetokenizer(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>The bytes a token stands for; empty for ids outside the vocabulary.</summary>
    public ReadOnlySpan<byte> GetTokenBytes(int id) =>
        (uint)id < (uint)_idToBytes.Length ? _idToBytes[id] : ReadOnlySpan<byte>.Empty;

    /// <summary>Looks up a token in its vocabulary spelling (byte-level, e.g. "Ġhello") or an added token's content.</summary>
    public int? TokenToId(string token) =>
        token is not null && _tokenToId.TryGetValue(token, out int id) ? id : null;

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <summary>True for added tokens flagged <c>special</c> (these are the ones <c>skipSpecialTokens</c> drops).</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    void EncodeText(string text, List<int> ids)
    {
        if (text.Length > 0) ids.AddRange(_bpe.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false));
    }

    string Normalize(string text) =>
        _normalization is { } form && !text.IsNormalized(form) ? text.Normalize(form) : text;

    static BpeTokenizer CreateBpe(TokenizerDefinition definition) =>
        BpeTokenizer.Create(new BpeOptions(definition.Vocab)
        {
            Merges = definition.Merges,
            PreTokenizer = new CodePointRegexPreTokenizer(definition.SplitPattern),
            ByteLevel = true,
        });

    int? RequireKnown(string? token, string field)
    {
        if (token is null) return null;

        return TokenToId(token) ?? throw new TokenizerFormatException(
            TokenizerDefinition.ConfigFile, field, $"names '{token}', which is neither in the vocabulary nor an added token");
    }

    static string ReplaceLoneSurrogates(string text)
    {
        int bad = FindLoneSurrogate(text, 0);
        if (bad < 0) return text;

        char[] chars = text.ToCharArray();
        for (; bad >= 0; bad = FindLoneSurrogate(text, bad + 1)) chars[bad] = '\uFFFD';

        return new string(chars);
    }

    static int FindLoneSurrogate(string text, int from)
    {
        for (int i = from; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) i++;
            else if (char.IsSurrogate(text[i])) return i;
        }

        return -1;
    }
}
