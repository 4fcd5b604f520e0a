using System.Collections.Concurrent;
using System.Diagnostics;
using Orleans.Runtime;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.ClusterTests;

/// <summary>
/// A replica's decode loop started by a traced request (no warm-up before it) must not carry that request's trace
/// context on into the steps: a step and the stage and expert calls under it are traced only when the step's own
/// span is sampled, never as children of whichever request happened to start the loop.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class StepTraceContextTests
{
    [Fact]
    public async Task TheStepsOfAReplicaStartedByATracedRequestAreNotTracedUnderIt()
    {
        var trace = ActivityTraceId.CreateRandom();
        var spans = new ConcurrentBag<Activity>();
        // Records what descends from the test's trace only (every other span in this process is left alone); never a step.
        using var listener = new ActivityListener
        {
            ShouldListenTo = _ => true,
            Sample = (ref ActivityCreationOptions<ActivityContext> o) =>
                o.Parent.TraceId == trace && o.Name != "qwen3.step" ? ActivitySamplingResult.AllDataAndRecorded : ActivitySamplingResult.None,
            ActivityStopped = a =>
            {
                if (a.TraceId == trace) spans.Add(a);
            },
        };
        ActivitySource.AddActivityListener(listener);

        string dir = ClusterEquivalenceTests.Checkpoint("moe");
        await using var cluster = await ModelCluster.StartAsync(dir, ClusterEquivalenceTests.Silos, stages: 2, expertGroups: 2);
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 6, IgnoreEos = true };
        // The first request brings a sampled trace parent (as a traced gateway call does) and activates the replica.
        RequestContext.Set("traceparent", $"00-{trace}-{ActivitySpanId.CreateRandom()}-01");
        int first = 0;
        await foreach (var u in cluster.Replica().Generate(new GenerationRequest([5, 6, 7], sampling))) first += u.Tokens.Count;
        RequestContext.Clear();
        int second = 0;
        await foreach (var u in cluster.Replica().Generate(new GenerationRequest([8, 9, 10, 11], sampling))) second += u.Tokens.Count;

        Assert.Equal(6, first);
        Assert.Equal(6, second);
        // The request itself was traced on the replica's silo (the context arrived: Generate is an IAsyncEnumerable call) ...
        Assert.True(spans.Any(s => s.OperationName.StartsWith("IAsyncEnumerableGrainExtension/StartEnumeration", StringComparison.Ordinal)),
            $"the request's trace did not reach the replica; spans in it: {string.Join(", ", spans.Select(s => s.OperationName).Distinct())}");
        // ... but no step's stage or expert call joined its trace.
        var joined = spans.Where(s => s.OperationName is "qwen3.stage" or "qwen3.experts"
            || s.OperationName.StartsWith("IPipelineStageGrain", StringComparison.Ordinal)
            || s.OperationName.StartsWith("IExpertGroupGrain", StringComparison.Ordinal)).Select(s => s.OperationName).ToList();
        Assert.True(joined.Count == 0, $"steps traced under the request that started the loop: {string.Join(", ", joined.Distinct())} ({joined.Count})");
    }
}
