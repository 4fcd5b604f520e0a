using Qwen3Cluster.Model.Engine;
using static TorchSharp.torch;

namespace Qwen3Cluster.Grains;

/// <summary>
/// Runs a step through a replica's stage grains in order (ids -> stage 0 -> ... -> logits), each told which pool
/// generation the scheduler's bookkeeping describes, so a stage that lost its cache says so instead of
/// computing on an empty one.
/// </summary>
public sealed class ClusterExecutor(IReadOnlyList<IPipelineStageGrain> stages, Device device) : IModelExecutor
{
    static readonly System.Diagnostics.Metrics.Counter<long> StageCallCounter =
        EngineMetrics.Meter.CreateCounter<long>("qwen3.grain_calls.stage", description: "Calls from replica grains to stage grains");
    static readonly System.Diagnostics.Metrics.Counter<long> ExpertCallCounter =
        EngineMetrics.Meter.CreateCounter<long>("qwen3.grain_calls.experts", description: "Calls from stage grains to expert-group grains");
    readonly Guid[] _generations = new Guid[stages.Count];

    public long StageCalls { get; private set; }
    public long ExpertCalls { get; private set; }

    public async ValueTask<Tensor> ExecuteAsync(ForwardContext context, int[] inputIds, CancellationToken cancellationToken)
    {
        // A step belongs to no single request: the engine's loop inherited the Orleans request context of the call that
        // started it (that request's trace parent among it), which every stage call would carry on, so that every
        // step's stage and expert calls joined that request's trace (recorded when it was sampled). The step's own
        // span, when sampled, is Activity.Current and goes with the calls as usual.
        Orleans.Runtime.RequestContext.Clear();
        var payload = TensorPayloads.FromIds(inputIds);
        for (int s = 0; s < stages.Count; s++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            StageResult result;
            try
            {
                result = await stages[s].Forward(new StageStep(context, payload, _generations[s]), cancellationToken);
            }
            catch
            {
                // The stage may come back as a new activation with an empty pool: accept whichever pool answers next.
                Array.Clear(_generations);
                throw;
            }
            StageCalls++;
            ExpertCalls += result.ExpertCalls;
            StageCallCounter.Add(1);
            ExpertCallCounter.Add(result.ExpertCalls);
            if (result.Output is null)
            {
                Array.Clear(_generations);
                throw new KvCacheLostException($"Stage {s} has a new KV pool ({result.PoolGeneration}); its cache is gone.");
            }
            _generations[s] = result.PoolGeneration;
            payload = result.Output;
        }
        return payload.ToTensor(device);
    }
}
