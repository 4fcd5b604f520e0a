using System.Text;

namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// A regular language over bytes, as a tree: what the regex parser and the JSON Schema compiler produce and
/// <see cref="Nfa"/> instantiates. Text is UTF-8, so a character class is a choice of byte sequences
/// (<see cref="Utf8Ranges"/>). <see cref="Nothing"/> is the empty language: a choice drops it, a sequence with it is
/// itself nothing; it is how a depth-limited recursive schema ends.
/// </summary>
public abstract record Grammar
{
    public static readonly Grammar Empty = new SeqNode([]);
    public static readonly Grammar Nothing = new AltNode([]);

    public static Grammar Text(string text) => new BytesNode(Encoding.UTF8.GetBytes(text));

    public static Grammar Byte(byte lo, byte hi) => new RangeNode(lo, hi);

    public static Grammar Seq(params IEnumerable<Grammar> parts)
    {
        var list = new List<Grammar>();
        foreach (var part in parts)
        {
            if (part.IsNothing) return Nothing;
            if (part is SeqNode s) list.AddRange(s.Parts);
            else list.Add(part);
        }
        return list.Count == 1 ? list[0] : new SeqNode(list);
    }

    public static Grammar Alt(params IEnumerable<Grammar> choices)
    {
        var list = new List<Grammar>();
        foreach (var choice in choices)
        {
            if (choice is AltNode a) list.AddRange(a.Choices);
            else list.Add(choice);
        }
        return list.Count == 1 ? list[0] : new AltNode(list);
    }

    /// <summary><paramref name="min"/> to <paramref name="max"/> (null: unbounded) repetitions.</summary>
    public static Grammar Repeat(Grammar item, int min, int? max)
    {
        if (max is 0) return Empty;
        if (item.IsNothing) return min == 0 ? Empty : Nothing;
        return new RepeatNode(item, min, max);
    }

    public static Grammar Optional(Grammar item) => Repeat(item, 0, 1);

    public static Grammar Star(Grammar item) => Repeat(item, 0, null);

    /// <summary>Items separated by <paramref name="separator"/>, at least <paramref name="min"/> and at most <paramref name="max"/>.</summary>
    public static Grammar List(Grammar item, Grammar separator, int min, int? max)
    {
        if (max is 0) return Empty;
        var more = Repeat(Seq(separator, item), Math.Max(min - 1, 0), max - 1);
        var some = Seq(item, more);
        return min == 0 ? Alt(Empty, some) : some;
    }

    public bool IsNothing => this is AltNode { Choices.Count: 0 };
}

public sealed record BytesNode(byte[] Bytes) : Grammar;

public sealed record RangeNode(byte Lo, byte Hi) : Grammar;

public sealed record SeqNode(IReadOnlyList<Grammar> Parts) : Grammar;

public sealed record AltNode(IReadOnlyList<Grammar> Choices) : Grammar;

public sealed record RepeatNode(Grammar Item, int Min, int? Max) : Grammar;
