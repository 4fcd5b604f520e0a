using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Engine;

/// <summary>A stage's forward pass stops between layers once its step is abandoned.</summary>
public sealed class StageCancellationTests
{
    [Fact]
    public async Task AStepCancelledDuringItsExpertsStopsBeforeTheNextLayer()
    {
        string dir = TestCheckpoints.Get("small-moe", TestCheckpoints.SmallMoe);
        var config = Qwen3Config.Load(dir);
        using var reader = Qwen3Cluster.Model.Checkpoint.CheckpointReader.Open(dir);
        using var weights = new CheckpointWeights(reader, CPU);
        using var stage = new ModelStage(config, StageRange.Split(config.NumHiddenLayers, 1)[0], weights);
        using var pool = stage.CreatePool(16, 4);
        using var cancel = new CancellationTokenSource();
        var experts = new CancellingExperts(cancel);
        var context = new ForwardContext([new SequenceSlice(0, 3, [0])], 4, [2]);
        using var input = tensor(new long[] { 5, 17, 300 });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            using var _ = await stage.ForwardAsync(input, context, pool, experts, cancel.Token);
        });
        // Layer 0 is sparse: its experts ran, the step was abandoned there, and layer 2's were never asked for.
        Assert.Equal([0], experts.Layers);
    }

    sealed class CancellingExperts(CancellationTokenSource cancel) : IExpertDispatcher
    {
        public List<int> Layers { get; } = [];

        public ValueTask<Tensor> RunAsync(int layer, Tensor x, Routing routing, CancellationToken cancellationToken)
        {
            Layers.Add(layer);
            cancel.Cancel();
            return ValueTask.FromResult(zeros_like(x));
        }
    }
}
