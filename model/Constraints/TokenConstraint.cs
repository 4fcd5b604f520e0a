namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// A constraint compiled against a vocabulary: its byte automaton, and for each automaton state reached so far the
/// tokens that may come next (a bitmask over ids, and each allowed token with how far from a complete match it leaves the output). A state's mask
/// is one walk of the vocabulary trie, done the first time a sequence is in that state and kept: a schema's states are
/// few (a string's content is one state however long the string), so after the first requests a step's mask is a
/// lookup. Shared by every sequence with an equal constraint; thread-safe.
/// </summary>
public sealed class TokenConstraint
{
    readonly TokenVocabulary _vocabulary;
    readonly ByteDfa _dfa;
    readonly Dictionary<int, StateMask> _masks = [];
    readonly object _gate = new();

    public TokenConstraint(TokenVocabulary vocabulary, Nfa nfa)
    {
        _vocabulary = vocabulary;
        _dfa = new ByteDfa(nfa);
    }

    public int Start => _dfa.Start;
    public TokenVocabulary Vocabulary => _vocabulary;

    /// <summary>The tokens allowed in one automaton state.</summary>
    public sealed record StateMask(ulong[] Bits, int[] Tokens, int[] NextDistance, int MaxNextDistance, bool Accepting, bool Complete, int Distance);

    public StateMask Mask(int state)
    {
        lock (_gate)
        {
            if (!_masks.TryGetValue(state, out var mask)) _masks[state] = mask = Walk(state);
            return mask;
        }
    }

    /// <summary>The state after token <paramref name="id"/>'s bytes, or <see cref="ByteDfa.Dead"/>.</summary>
    public int Next(int state, int id)
    {
        lock (_gate) return _dfa.Walk(state, _vocabulary.Spelling(id));
    }

    /// <summary>Walks the trie in preorder from <paramref name="state"/>, skipping every subtree whose prefix is dead.</summary>
    StateMask Walk(int state)
    {
        var trie = _vocabulary.Trie;
        var bits = new ulong[(_vocabulary.Count + 63) / 64];
        var tokens = new List<int>();
        var next = new List<int>();
        var at = new int[trie.MaxDepth + 1];
        at[0] = state;
        int maxDistance = 0;
        for (int i = 0; i < trie.NodeCount;)
        {
            int d = trie.Depth[i];
            int s = _dfa.Step(at[d - 1], trie.Byte[i]);
            if (s == ByteDfa.Dead)
            {
                i = trie.SubtreeEnd[i];
                continue;
            }
            at[d] = s;
            int count = trie.TokenCount[i];
            if (count > 0)
            {
                int distance = _dfa.Distance(s);
                if (distance > maxDistance) maxDistance = distance;
                for (int k = trie.TokenStart[i]; k < trie.TokenStart[i] + count; k++)
                {
                    int id = trie.Tokens[k];
                    bits[id >> 6] |= 1UL << (id & 63);
                    tokens.Add(id);
                    next.Add(distance);
                }
            }
            i++;
        }
        return new StateMask(bits, [.. tokens], [.. next], maxDistance, _dfa.IsAccepting(state), _dfa.IsComplete(state), _dfa.Distance(state));
    }

    /// <summary>The fewest bytes from <paramref name="state"/> to a complete match.</summary>
    public int Distance(int state)
    {
        lock (_gate) return _dfa.Distance(state);
    }
}
