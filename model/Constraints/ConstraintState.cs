using System.Numerics;

namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// One sequence's place in its constraint: which tokens may come next, given how many it may still generate (a
/// sequence near its limit is steered onto a shortest way to a complete match, so it ends valid), and whether the
/// match is complete (then the sequence stops: nothing more is allowed).
/// </summary>
public sealed class ConstraintState(TokenConstraint constraint)
{
    int _state = constraint.Start;

    public TokenConstraint Constraint => constraint;

    /// <summary>Accepting with nothing allowed after: the output is whole.</summary>
    public bool IsComplete => constraint.Mask(_state).Complete;

    /// <summary>Set when a token outside the constraint was appended (a caller that ignored the mask); the state then stays put.</summary>
    public bool Violated { get; private set; }

    /// <summary>
    /// Sets every disallowed logit of <paramref name="logits"/> (one row over the model's vocabulary) to -infinity.
    /// <paramref name="remaining"/> is how many tokens may follow this one; <paramref name="ends"/> are the ids that end
    /// a sequence, allowed where the match so far is complete.
    /// </summary>
    public void Apply(Span<float> logits, int remaining, IReadOnlyCollection<int> ends)
    {
        var mask = constraint.Mask(_state);
        bool canEnd = mask.Accepting && ends.Count > 0;
        var bits = remaining >= mask.MaxNextDistance ? mask.Bits : WithinBudget(mask, remaining, canEnd);
        Span<float> saved = stackalloc float[Math.Min(ends.Count, 16)];
        int e = 0;
        foreach (int id in ends)
        {
            if (e < saved.Length) saved[e++] = (uint)id < (uint)logits.Length ? logits[id] : 0;
        }
        for (int word = 0; word * 64 < logits.Length; word++)
        {
            ulong allowed = word < bits.Length ? bits[word] : 0;
            if (allowed == ulong.MaxValue) continue;
            int at = word * 64;
            int width = Math.Min(64, logits.Length - at);
            if (allowed == 0)
            {
                logits.Slice(at, width).Fill(float.NegativeInfinity);
                continue;
            }
            for (ulong off = ~allowed; off != 0; off &= off - 1)
            {
                int bit = BitOperations.TrailingZeroCount(off);
                if (bit >= width) break;
                logits[at + bit] = float.NegativeInfinity;
            }
        }
        if (!mask.Accepting) return;
        e = 0;
        foreach (int id in ends)
        {
            if (e < saved.Length && (uint)id < (uint)logits.Length) logits[id] = saved[e];
            e++;
        }
    }

    /// <summary>
    /// The allowed tokens after which a complete match is still within <paramref name="remaining"/> tokens (one per
    /// byte at worst). When none is: only an end, if the match so far may end; else the nearest ones.
    /// </summary>
    static ulong[] WithinBudget(TokenConstraint.StateMask mask, int remaining, bool canEnd)
    {
        int limit = remaining;
        if (!mask.NextDistance.Any(d => d <= limit))
        {
            if (canEnd) return new ulong[mask.Bits.Length];
            limit = mask.NextDistance.Length == 0 ? 0 : mask.NextDistance.Min();
        }
        var bits = new ulong[mask.Bits.Length];
        for (int k = 0; k < mask.Tokens.Length; k++)
        {
            if (mask.NextDistance[k] > limit) continue;
            int id = mask.Tokens[k];
            bits[id >> 6] |= 1UL << (id & 63);
        }
        return bits;
    }

    public void Advance(int token)
    {
        if (constraint.Vocabulary.Spelling(token).IsEmpty) return;
        int next = constraint.Next(_state, token);
        if (next == ByteDfa.Dead) Violated = true;
        else _state = next;
    }
}
