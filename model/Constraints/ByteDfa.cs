namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// The deterministic automaton of an <see cref="Nfa"/>, built as it is walked (a lazy subset construction): a state
/// is the set of automaton states a prefix can be in, every state can still reach acceptance, and a byte that would
/// leave them all leads to <see cref="Dead"/>. Not thread-safe: its owner serialises access.
/// </summary>
public sealed class ByteDfa
{
    public const int Dead = -1;
    const int Unknown = -2;

    readonly Nfa _nfa;
    readonly Dictionary<int[], int> _ids = new(new SetComparer());
    readonly List<int[]> _sets = [];
    readonly List<bool> _accepting = [];
    readonly List<bool> _hasEdges = [];
    readonly List<int> _distance = [];
    int[] _next = [];
    readonly Stack<int> _work = new();
    readonly HashSet<int> _seen = [];
    readonly List<int> _targets = [];

    public ByteDfa(Nfa nfa)
    {
        _nfa = nfa;
        Start = Intern(Closure([nfa.Start]));
    }

    public int Start { get; }
    public int StateCount => _sets.Count;

    public bool IsAccepting(int state) => _accepting[state];

    /// <summary>Accepting with no byte to go on with: the match is over, nothing more may be generated.</summary>
    public bool IsComplete(int state) => _accepting[state] && !_hasEdges[state];

    /// <summary>The fewest bytes that lead from <paramref name="state"/> to acceptance.</summary>
    public int Distance(int state) => _distance[state];

    public int Step(int state, byte b)
    {
        int index = state * 256 + b;
        int next = _next[index];
        if (next != Unknown) return next;
        _targets.Clear();
        foreach (int s in _sets[state])
        {
            foreach (var (lo, hi, to) in _nfa.Edges(s))
            {
                if (b >= lo && b <= hi) _targets.Add(to);
            }
        }
        next = _targets.Count == 0 ? Dead : Intern(Closure(_targets));
        _next[index] = next;
        return next;
    }

    /// <summary>The state after <paramref name="bytes"/>, or <see cref="Dead"/>.</summary>
    public int Walk(int state, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            state = Step(state, b);
            if (state == Dead) return Dead;
        }
        return state;
    }

    /// <summary>The epsilon closure, keeping only the states that matter to a step: those with edges, and the accepting one.</summary>
    int[] Closure(IEnumerable<int> from)
    {
        _seen.Clear();
        foreach (int s in from)
        {
            if (_seen.Add(s)) _work.Push(s);
        }
        var kept = new List<int>();
        while (_work.Count > 0)
        {
            int s = _work.Pop();
            if (_nfa.Edges(s).Count > 0 || s == _nfa.Accept) kept.Add(s);
            foreach (int t in _nfa.Epsilon(s))
            {
                if (_nfa.Distance(t) != Nfa.Unreachable && _seen.Add(t)) _work.Push(t);
            }
        }
        kept.Sort();
        return [.. kept];
    }

    int Intern(int[] set)
    {
        if (set.Length == 0) return Dead;
        if (_ids.TryGetValue(set, out int id)) return id;
        id = _sets.Count;
        _ids[set] = id;
        _sets.Add(set);
        _accepting.Add(Array.BinarySearch(set, _nfa.Accept) >= 0);
        _hasEdges.Add(set.Any(s => _nfa.Edges(s).Count > 0));
        _distance.Add(set.Min(_nfa.Distance));
        if (_next.Length < _sets.Count * 256) Array.Resize(ref _next, Math.Max(_sets.Count * 256, _next.Length * 2));
        _next.AsSpan(id * 256, 256).Fill(Unknown);
        return id;
    }

    sealed class SetComparer : IEqualityComparer<int[]>
    {
        public bool Equals(int[]? a, int[]? b) => a.AsSpan().SequenceEqual(b);

        public int GetHashCode(int[] set)
        {
            var hash = new HashCode();
            foreach (int s in set) hash.Add(s);
            return hash.ToHashCode();
        }
    }
}
