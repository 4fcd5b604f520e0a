namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// A vocabulary's tokens as a byte trie laid out in preorder: node i's subtree is nodes [i, <c>SubtreeEnd[i]</c>),
/// so a walk that finds a prefix dead skips its whole subtree with one jump. Built once per vocabulary; which tokens
/// a constraint allows next is one walk of it (<see cref="TokenConstraint"/>).
/// </summary>
public sealed class TokenTrie
{
    public byte[] Byte { get; }
    public int[] Depth { get; }
    public int[] SubtreeEnd { get; }
    /// <summary>The tokens spelled by the path to node i: <c>Tokens[TokenStart[i] .. TokenStart[i] + TokenCount[i])</c>.</summary>
    public int[] TokenStart { get; }
    public int[] TokenCount { get; }
    public int[] Tokens { get; }
    public int MaxDepth { get; }
    public int NodeCount => Byte.Length;

    /// <param name="spellings">Each token's bytes; an empty spelling (a special token, an unused id) is left out.</param>
    public TokenTrie(IReadOnlyList<byte[]> spellings)
    {
        var ids = Enumerable.Range(0, spellings.Count).Where(i => spellings[i].Length > 0).ToArray();
        Array.Sort(ids, (a, b) => spellings[a].AsSpan().SequenceCompareTo(spellings[b]));
        Tokens = ids;
        var bytes = new List<byte>();
        var depth = new List<int>();
        var end = new List<int>();
        var start = new List<int>();
        var count = new List<int>();
        var path = new List<int>();
        byte[] previous = [];
        for (int t = 0; t < ids.Length; t++)
        {
            byte[] spelling = spellings[ids[t]];
            int common = 0;
            while (common < previous.Length && common < spelling.Length && previous[common] == spelling[common]) common++;
            while (path.Count > common)
            {
                end[path[^1]] = bytes.Count;
                path.RemoveAt(path.Count - 1);
            }
            for (int d = common; d < spelling.Length; d++)
            {
                path.Add(bytes.Count);
                bytes.Add(spelling[d]);
                depth.Add(d + 1);
                end.Add(0);
                start.Add(t);
                count.Add(0);
            }
            int node = path[^1];
            if (count[node] == 0) start[node] = t;
            count[node]++;
            previous = spelling;
        }
        foreach (int node in path) end[node] = bytes.Count;
        Byte = [.. bytes];
        Depth = [.. depth];
        SubtreeEnd = [.. end];
        TokenStart = [.. start];
        TokenCount = [.. count];
        MaxDepth = depth.Count == 0 ? 0 : depth.Max();
    }
}
