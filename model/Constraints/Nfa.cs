namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// A <see cref="Grammar"/> instantiated as a Thompson automaton over bytes: states joined by byte ranges and
/// epsilon moves, one accepting state. Edges into states that cannot reach acceptance are dropped, and every state
/// knows the fewest bytes that lead from it to acceptance (<see cref="Distance"/>), which is how a constrained
/// generation is steered to finish within its token budget.
/// </summary>
public sealed class Nfa
{
    /// <summary>An automaton beyond this (a schema with huge counts) is refused rather than built.</summary>
    public const int MaxStates = 400_000;
    public const int Unreachable = int.MaxValue;

    readonly List<List<(byte Lo, byte Hi, int To)>> _edges = [];
    readonly List<List<int>> _epsilon = [];

    public int Start { get; }
    public int Accept { get; }
    public int Count => _edges.Count;
    int[] _distance = [];

    Nfa(Grammar grammar)
    {
        Start = NewState();
        Accept = Emit(grammar, Start);
        ComputeDistances();
        foreach (var edges in _edges) edges.RemoveAll(e => _distance[e.To] == Unreachable);
    }

    public static Nfa Build(Grammar grammar)
    {
        var nfa = new Nfa(grammar);
        if (nfa.Distance(nfa.Start) == Unreachable) throw new GrammarException("the constraint matches nothing");
        return nfa;
    }

    public IReadOnlyList<(byte Lo, byte Hi, int To)> Edges(int state) => _edges[state];

    public IReadOnlyList<int> Epsilon(int state) => _epsilon[state];

    /// <summary>The fewest bytes from <paramref name="state"/> to acceptance, or <see cref="Unreachable"/>.</summary>
    public int Distance(int state) => _distance[state];

    int NewState()
    {
        if (_edges.Count >= MaxStates) throw new GrammarException($"the constraint is too large (over {MaxStates} automaton states): lower its counts or lengths");
        _edges.Add([]);
        _epsilon.Add([]);
        return _edges.Count - 1;
    }

    /// <summary>Adds <paramref name="grammar"/> from state <paramref name="from"/>; returns the state it ends in.</summary>
    int Emit(Grammar grammar, int from)
    {
        switch (grammar)
        {
            case BytesNode b:
                foreach (byte x in b.Bytes)
                {
                    int next = NewState();
                    _edges[from].Add((x, x, next));
                    from = next;
                }
                return from;
            case RangeNode r:
            {
                int next = NewState();
                _edges[from].Add((r.Lo, r.Hi, next));
                return next;
            }
            case SeqNode s:
                foreach (var part in s.Parts) from = Emit(part, from);
                return from;
            case AltNode a:
            {
                int exit = NewState();
                foreach (var choice in a.Choices)
                {
                    int entry = NewState();
                    _epsilon[from].Add(entry);
                    _epsilon[Emit(choice, entry)].Add(exit);
                }
                return exit;
            }
            case RepeatNode rep:
            {
                for (int i = 0; i < rep.Min; i++) from = Emit(rep.Item, from);
                if (rep.Max is not { } max)
                {
                    int loop = NewState();
                    _epsilon[from].Add(loop);
                    _epsilon[Emit(rep.Item, loop)].Add(loop);
                    return loop;
                }
                for (int i = rep.Min; i < max; i++)
                {
                    int exit = NewState();
                    _epsilon[from].Add(exit);
                    _epsilon[Emit(rep.Item, from)].Add(exit);
                    from = exit;
                }
                return from;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(grammar), grammar.GetType().Name);
        }
    }

    /// <summary>0-1 breadth-first search backwards from the accepting state: epsilon moves cost nothing, a byte one.</summary>
    void ComputeDistances()
    {
        int n = _edges.Count;
        var reverse = new List<(int From, int Cost)>[n];
        for (int i = 0; i < n; i++) reverse[i] = [];
        for (int from = 0; from < n; from++)
        {
            foreach (var e in _edges[from]) reverse[e.To].Add((from, 1));
            foreach (int to in _epsilon[from]) reverse[to].Add((from, 0));
        }
        _distance = new int[n];
        Array.Fill(_distance, Unreachable);
        var queue = new LinkedList<int>();
        _distance[Accept] = 0;
        queue.AddFirst(Accept);
        while (queue.Count > 0)
        {
            int state = queue.First!.Value;
            queue.RemoveFirst();
            foreach (var (from, cost) in reverse[state])
            {
                int d = _distance[state] + cost;
                if (d >= _distance[from]) continue;
                _distance[from] = d;
                if (cost == 0) queue.AddFirst(from);
                else queue.AddLast(from);
            }
        }
    }
}
