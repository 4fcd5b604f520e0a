using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// Waits for a started expert-group call's output [Tg, D]: a new tensor, the caller's (the sum of a step's outputs is
/// made in the first of them).
/// </summary>
public delegate ValueTask<Tensor> ExpertGroupOutput();

/// <summary>
/// Starts copy <paramref name="copy"/> of one expert group (0: the group itself) on tokens routed to it: x [Tg, D],
/// ids [Tg, K], weights [Tg, K]. It completes once the call is under way, with what waits for its output; a transport
/// may do that waiting on the caller's thread, so the caller starts every group's call before it waits for any, and
/// waits for every call it started.
/// </summary>
public delegate ValueTask<ExpertGroupOutput> ExpertGroupCall(int group, int copy, int layer, Tensor x, Tensor expertIds, Tensor weights,
    CancellationToken cancellationToken);

/// <summary>
/// Sends each expert group only the tokens routed to at least one of its experts, all groups at once, and
/// adds their weighted outputs back into place: one call per group per layer per step. A group that
/// <paramref name="copies"/> says runs as n copies gets its tokens cut into n contiguous shares, one call per copy
/// (each token still goes to exactly one copy, so its output is the same). <see cref="Routed"/> counts the
/// (token, expert) assignments each group was sent.
/// </summary>
public sealed class PartitionedExperts(IReadOnlyList<ExpertRange> groups, ExpertGroupCall call, Func<int, int>? copies = null)
    : IExpertDispatcher
{
    readonly long[] _routed = new long[groups.Count];
    int _turn;

    public IReadOnlyList<ExpertRange> Groups => groups;

    /// <summary>(token, expert) assignments routed to each group since this dispatcher was made, over all layers.</summary>
    public IReadOnlyList<long> Routed => _routed;

    public async ValueTask<Tensor> RunAsync(int layer, Tensor x, Routing routing, CancellationToken cancellationToken)
    {
        var shares = Partition(routing.ExpertIds);
        if (shares.Count == 1 && shares[0].Tokens.Length == x.size(0))
        {
            var output = await call(shares[0].Group, shares[0].Copy, layer, x, routing.ExpertIds, routing.Weights, cancellationToken);
            return await output();
        }

        var inputs = shares.Select(s => Slice(s.Tokens, x, routing)).ToArray();
        try
        {
            var started = new ValueTask<ExpertGroupOutput>[shares.Count];
            for (int i = 0; i < started.Length; i++)
                started[i] = Start(shares[i].Group, shares[i].Copy, layer, inputs[i], cancellationToken);
            // Every started call is waited for, failed or not, so none is left holding its transport.
            var outputs = new Tensor?[started.Length];
            Exception? error = null;
            for (int i = 0; i < started.Length; i++)
            {
                try
                {
                    outputs[i] = await (await started[i])();
                }
                catch (Exception e)
                {
                    error ??= e;
                }
            }
            if (error is not null)
            {
                foreach (var output in outputs) output?.Dispose();
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
            }
            return Combine(x, inputs, outputs!);
        }
        finally
        {
            foreach (var input in inputs) input.Dispose();
        }
    }

    ValueTask<ExpertGroupOutput> Start(int group, int copy, int layer, GroupInput input, CancellationToken cancellationToken)
    {
        try
        {
            return call(group, copy, layer, input.X, input.Ids, input.Weights, cancellationToken);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<ExpertGroupOutput>(e);
        }
    }

    /// <summary>
    /// For each group with work, the rows of the tokens routed to any of its experts, cut into one contiguous share
    /// per copy (the copies take turns when there are fewer tokens than copies).
    /// </summary>
    List<(int Group, int Copy, long[] Tokens)> Partition(Tensor expertIds)
    {
        using var host = expertIds.cpu();
        var ids = host.data<long>().ToArray();
        int k = (int)expertIds.size(1);
        int tokens = ids.Length / k;
        var shares = new List<(int, int, long[])>();
        var picked = new List<long>(tokens);
        int turn = _turn++ & int.MaxValue;
        for (int g = 0; g < groups.Count; g++)
        {
            picked.Clear();
            long assigned = 0;
            for (int t = 0; t < tokens; t++)
            {
                int hits = 0;
                for (int j = 0; j < k; j++)
                    if (groups[g].Contains(ids[t * k + j])) hits++;
                if (hits == 0) continue;
                picked.Add(t);
                assigned += hits;
            }
            _routed[g] += assigned;
            if (picked.Count == 0) continue;

            int n = Math.Max(1, copies?.Invoke(g) ?? 1);
            int parts = Math.Min(n, picked.Count);
            for (int p = 0; p < parts; p++)
            {
                int from = picked.Count * p / parts, to = picked.Count * (p + 1) / parts;
                shares.Add((g, (turn + p) % n, picked.GetRange(from, to - from).ToArray()));
            }
        }
        return shares;
    }

    /// <summary>The rows of <paramref name="tokens"/>; a share of every token (each group's lot at one token) takes x as it is.</summary>
    static GroupInput Slice(long[] tokens, Tensor x, Routing routing)
    {
        if (tokens.Length == x.size(0)) return new GroupInput(null, x, routing.ExpertIds, routing.Weights);
        using var scope = NewDisposeScope();
        var index = tensor(tokens, device: x.device);
        return new GroupInput(
            index.MoveToOuterDisposeScope(),
            x.index_select(0, index).MoveToOuterDisposeScope(),
            routing.ExpertIds.index_select(0, index).MoveToOuterDisposeScope(),
            routing.Weights.index_select(0, index).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The sum of the outputs, each at its share's rows, added in the shares' order (so a token's sum does not depend on
    /// what else its step holds). When the first share is of every token (the step's rows in order), its output takes
    /// the others in place: at one token (every decode step at one stream) no zeroed tensor comes first.
    /// </summary>
    static Tensor Combine(Tensor x, GroupInput[] inputs, Tensor[] outputs)
    {
        bool inPlace = inputs[0].Index is null;
        var combined = inPlace ? outputs[0] : zeros_like(x);
        for (int i = inPlace ? 1 : 0; i < inputs.Length; i++)
        {
            if (inputs[i].Index is { } index) combined.index_add_(0, index, outputs[i], 1);
            else combined.add_(outputs[i]);
            outputs[i].Dispose();
        }
        return combined;
    }

    /// <summary>A share's rows; <see cref="Index"/> null when they are the step's own tensors (not this share's to dispose).</summary>
    sealed record GroupInput(Tensor? Index, Tensor X, Tensor Ids, Tensor Weights) : IDisposable
    {
        public void Dispose()
        {
            if (Index is null) return;
            Index.Dispose();
            X.Dispose();
            Ids.Dispose();
            Weights.Dispose();
        }
    }
}
