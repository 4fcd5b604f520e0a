using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>Runs one expert group on the tokens routed to it: x [Tg, D], ids [Tg, K], weights [Tg, K] -> [Tg, D].</summary>
public delegate ValueTask<Tensor> ExpertGroupCall(int group, int layer, Tensor x, Tensor expertIds, Tensor weights,
    CancellationToken cancellationToken);

/// <summary>
/// Sends each expert group only the tokens routed to at least one of its experts, all groups at once, and
/// adds their weighted outputs back into place: one call per group per layer per step.
/// </summary>
public sealed class PartitionedExperts(IReadOnlyList<ExpertRange> groups, ExpertGroupCall call) : IExpertDispatcher
{
    public IReadOnlyList<ExpertRange> Groups => groups;

    public async ValueTask<Tensor> RunAsync(int layer, Tensor x, Routing routing, CancellationToken cancellationToken)
    {
        var shares = Partition(routing.ExpertIds);
        if (shares.Count == 1 && shares[0].Tokens.Length == x.shape[0])
            return await call(shares[0].Group, layer, x, routing.ExpertIds, routing.Weights, cancellationToken);

        var inputs = shares.Select(s => Slice(s.Tokens, x, routing)).ToArray();
        try
        {
            var calls = shares.Select((s, i) =>
                call(s.Group, layer, inputs[i].X, inputs[i].Ids, inputs[i].Weights, cancellationToken).AsTask()).ToArray();
            try
            {
                return Combine(x, inputs, await Task.WhenAll(calls));
            }
            catch
            {
                foreach (var done in calls.Where(c => c.IsCompletedSuccessfully)) done.Result.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var input in inputs) input.Dispose();
        }
    }

    /// <summary>For each group with work, the rows of the tokens routed to any of its experts.</summary>
    List<(int Group, long[] Tokens)> Partition(Tensor expertIds)
    {
        using var host = expertIds.cpu();
        var ids = host.data<long>().ToArray();
        int k = (int)expertIds.shape[1];
        int tokens = ids.Length / k;
        var shares = new List<(int, long[])>();
        var picked = new List<long>(tokens);
        for (int g = 0; g < groups.Count; g++)
        {
            picked.Clear();
            for (int t = 0; t < tokens; t++)
            {
                for (int j = 0; j < k; j++)
                {
                    if (groups[g].Contains(ids[t * k + j]))
                    {
                        picked.Add(t);
                        break;
                    }
                }
            }

            if (picked.Count > 0) shares.Add((g, picked.ToArray()));
        }
        return shares;
    }

    static GroupInput Slice(long[] tokens, Tensor x, Routing routing)
    {
        using var scope = NewDisposeScope();
        var index = tensor(tokens, device: x.device);
        return new GroupInput(
            index.MoveToOuterDisposeScope(),
            x.index_select(0, index).MoveToOuterDisposeScope(),
            routing.ExpertIds.index_select(0, index).MoveToOuterDisposeScope(),
            routing.Weights.index_select(0, index).MoveToOuterDisposeScope());
    }

    static Tensor Combine(Tensor x, GroupInput[] inputs, Tensor[] outputs)
    {
        using var scope = NewDisposeScope();
        var combined = zeros_like(x);
        for (int i = 0; i < inputs.Length; i++)
        {
            combined.index_add_(0, inputs[i].Index, outputs[i], 1);
            outputs[i].Dispose();
        }
        return combined.MoveToOuterDisposeScope();
    }

    sealed record GroupInput(Tensor Index, Tensor X, Tensor Ids, Tensor Weights) : IDisposable
    {
        public void Dispose()
        {
            Index.Dispose();
            X.Dispose();
            Ids.Dispose();
            Weights.Dispose();
        }
    }
}
