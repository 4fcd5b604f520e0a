namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// What a constraint needs of a tokenizer: each token id's bytes (special tokens have none: they are never text a
/// constraint can match, and the ends of sequence are allowed apart, once a match is complete), the trie of them, and
/// the compiled constraints already asked for (a schema is compiled once per vocabulary, however many requests use it).
/// </summary>
public sealed class TokenVocabulary
{
    /// <summary>How many compiled constraints are kept; the least recently used goes first.</summary>
    public const int CacheSize = 64;

    readonly byte[][] _spellings;
    readonly LinkedList<(OutputConstraint Key, TokenConstraint Value)> _recent = new();
    readonly Dictionary<OutputConstraint, LinkedListNode<(OutputConstraint, TokenConstraint)>> _cache = [];

    /// <param name="spellings">Each id's bytes, empty for special tokens and ids the tokenizer does not use.</param>
    public TokenVocabulary(IReadOnlyList<byte[]> spellings)
    {
        _spellings = [.. spellings];
        Trie = new TokenTrie(_spellings);
        // The budget steering counts one token per byte: exact when every byte is a token, as in byte-level BPE.
        var single = new bool[256];
        foreach (var s in _spellings)
        {
            if (s.Length == 1) single[s[0]] = true;
        }
        EveryByteIsAToken = single.All(x => x);
    }

    /// <summary>A tokenizer's vocabulary: every id's bytes, none for special tokens.</summary>
    public static TokenVocabulary For(Tokenization.Qwen3Tokenizer tokenizer) =>
        new(Enumerable.Range(0, tokenizer.VocabSize).Select(id => tokenizer.IsSpecial(id) ? [] : tokenizer.GetTokenBytes(id).ToArray()).ToArray());

    public TokenTrie Trie { get; }
    public int Count => _spellings.Length;
    public bool EveryByteIsAToken { get; }

    public ReadOnlySpan<byte> Spelling(int id) => (uint)id < (uint)_spellings.Length ? _spellings[id] : [];

    /// <summary>The compiled form of <paramref name="constraint"/> against this vocabulary, from the cache when it is there.</summary>
    public TokenConstraint Compile(OutputConstraint constraint)
    {
        lock (_cache)
        {
            if (_cache.TryGetValue(constraint, out var node))
            {
                _recent.Remove(node);
                _recent.AddFirst(node);
                return node.Value.Item2;
            }
        }
        var compiled = new TokenConstraint(this, Nfa.Build(ConstraintGrammar.Compile(constraint)));
        lock (_cache)
        {
            if (_cache.TryGetValue(constraint, out var raced)) return raced.Value.Item2;
            _cache[constraint] = _recent.AddFirst((constraint, compiled));
            if (_cache.Count > CacheSize)
            {
                _cache.Remove(_recent.Last!.Value.Key);
                _recent.RemoveLast();
            }
        }
        return compiled;
    }
}
