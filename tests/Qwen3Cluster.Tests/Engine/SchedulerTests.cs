using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.Tests.Engine;

/// <summary>The bookkeeping under the decode loop, as plain data structures.</summary>
public sealed class SchedulerTests
{
    static long _ids;

    static Sequence Seq(int promptLength, string? parkAs = null, string? resumeFrom = null, int[]? prompt = null) =>
        new(++_ids, new GenerationRequest(prompt ?? Enumerable.Range(1, promptLength).ToArray(), SamplingParams.Greedy(8))
        {
            ParkAs = parkAs,
            ResumeFrom = resumeFrom,
        }, null);

    /// <summary>A session turn prefilled in one step, then answered with <paramref name="lastToken"/>: it is now parking.</summary>
    static Sequence AnsweredTurn(Scheduler scheduler, Sequence turn, int lastToken)
    {
        scheduler.Add(turn);
        scheduler.Completed(scheduler.Schedule()!);
        turn.Append(lastToken);
        scheduler.Finish(turn);
        return turn;
    }

    [Fact]
    public void BlockManagerCountsReferencesAndFreesAtZero()
    {
        var blocks = new BlockManager(4, 16);
        int a = blocks.Allocate();
        blocks.AddReference(a);
        blocks.Release(a);
        Assert.Equal(3, blocks.FreeBlocks);
        blocks.Release(a);
        Assert.Equal(4, blocks.FreeBlocks);
        Assert.Throws<InvalidOperationException>(() => blocks.Release(a));
        var table = new List<int>();
        Assert.True(blocks.EnsureCapacity(table, 64));
        Assert.False(blocks.EnsureCapacity(table, 65));
        Assert.Equal(4, table.Count);
    }

    [Fact]
    public void PromptsAreChunkedToTheTokenBudget()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 16, BlockSize = 4, MaxBatchTokens = 10 });
        var s = Seq(25);
        scheduler.Add(s);
        var counts = new List<int>();
        while (scheduler.Schedule() is { } step)
        {
            counts.Add(step.Slices.Single().Count);
            Assert.Equal(step.Slices.Single().Start + step.Slices.Single().Count == 25, step.Sampling.Count == 1);
            scheduler.Completed(step);
            if (s.PendingTokens == 0) break;
        }
        Assert.Equal([10, 10, 5], counts);
    }

    [Fact]
    public void DecodeTokensComeFirstAndNewRequestsJoinTheSameStep()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 16, BlockSize = 4, MaxBatchTokens = 8 });
        var first = Seq(3);
        scheduler.Add(first);
        scheduler.Completed(scheduler.Schedule()!);
        first.Append(99);
        var second = Seq(20);
        scheduler.Add(second);
        var step = scheduler.Schedule()!;
        Assert.Equal([(first, 3, 1), (second, 0, 7)], step.Slices.Select(s => (s.Sequence, s.Start, s.Count)));
        Assert.Equal([0], step.Context.LogitRows);
    }

    [Fact]
    public void ARequestThatDoesNotFitWaitsAndOneThatNeverCanIsRefused()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 4, BlockSize = 4 });
        Assert.Equal(ErrorKind.ResourceExhausted, Assert.Throws<RequestError>(() => scheduler.Add(Seq(16))).Kind);
        var a = Seq(10);
        var b = Seq(10);
        scheduler.Add(a);
        scheduler.Add(b);
        var step = scheduler.Schedule()!;
        Assert.Equal([a], step.Slices.Select(s => s.Sequence));
        Assert.Equal(1, scheduler.WaitingCount);
        scheduler.Completed(step);
        scheduler.Finish(a);
        Assert.Equal([b], scheduler.Schedule()!.Slices.Select(s => s.Sequence));
    }

    [Fact]
    public void RunningOutOfBlocksPreemptsTheNewestSequence()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 2, BlockSize = 4 });
        var a = Seq(3);
        var b = Seq(3);
        scheduler.Add(a);
        scheduler.Add(b);
        var step = scheduler.Schedule()!;
        Assert.Equal(2, step.Slices.Count);
        scheduler.Completed(step);
        a.Append(7);
        b.Append(7);
        a.Append(8);
        step = scheduler.Schedule()!;
        Assert.Equal([a], step.Slices.Select(s => s.Sequence));
        Assert.Equal(SequenceStatus.Waiting, b.Status);
        Assert.Equal(0, b.NumComputed);
        Assert.Equal(1, scheduler.Preemptions);
    }

    [Fact]
    public void AParkedCacheIsResumedOnlyByAPromptThatExtendsIt()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 8, BlockSize = 4 });
        var turn1 = AnsweredTurn(scheduler, Seq(5, parkAs: "s"), 42);
        Assert.Equal(SequenceStatus.Parking, turn1.Status);
        Assert.True(scheduler.Parked.IsPending("s"));
        var flush = scheduler.Schedule()!;
        Assert.Equal((5, 1, false), (flush.Slices[0].Start, flush.Slices[0].Count, flush.Slices[0].Samples));
        scheduler.Completed(flush);
        Assert.Equal(SequenceStatus.Finished, turn1.Status);
        Assert.Equal(["s"], scheduler.Parked.Keys);
        Assert.Equal(2, scheduler.Blocks.UsedBlocks);

        var turn2 = Seq(0, resumeFrom: "s", prompt: [1, 2, 3, 4, 5, 42, 9, 9]);
        scheduler.Add(turn2);
        var step = scheduler.Schedule()!;
        Assert.Equal((6, 2), (step.Slices[0].Start, step.Slices[0].Count));
        Assert.Equal(6, turn2.CachedPromptTokens);

        var elsewhere = new Scheduler(new SchedulerOptions { NumBlocks = 8, BlockSize = 4 });
        AnsweredTurn(elsewhere, Seq(3, parkAs: "t"), 5);
        elsewhere.Completed(elsewhere.Schedule()!);
        var diverged = Seq(0, resumeFrom: "t", prompt: [1, 2, 4, 5, 6]);
        elsewhere.Add(diverged);
        Assert.Equal(0, elsewhere.Schedule()!.Slices[0].Start);
        Assert.Equal(0, diverged.CachedPromptTokens);
    }

    [Fact]
    public void ASessionTurnWaitsForItsPreviousTurnToParkTheCache()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 8, BlockSize = 4 });
        var turn1 = AnsweredTurn(scheduler, Seq(5, parkAs: "s"), 42);
        var turn2 = Seq(0, parkAs: "s", resumeFrom: "s", prompt: [1, 2, 3, 4, 5, 42, 7]);
        scheduler.Add(turn2);
        var flush = scheduler.Schedule()!;
        Assert.Equal([turn1], flush.Slices.Select(s => s.Sequence));
        Assert.Equal(SequenceStatus.Waiting, turn2.Status);
        scheduler.Completed(flush);
        var step = scheduler.Schedule()!;
        Assert.Equal((turn2, 6, 1, true), (step.Slices[0].Sequence, step.Slices[0].Start, step.Slices[0].Count, step.Slices[0].Samples));
        Assert.Equal(6, turn2.CachedPromptTokens);
        Assert.Empty(scheduler.Parked.Keys);
    }

    [Fact]
    public void APreemptedParkingTurnLosesOnlyItsSessionCache()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 3, BlockSize = 4 });
        var running = Seq(7);
        var turn = Seq(3, parkAs: "s");
        scheduler.Add(running);
        scheduler.Add(turn);
        var first = scheduler.Schedule()!;
        Assert.Equal(2, first.Slices.Count);
        scheduler.Completed(first);
        running.Append(7);
        running.Append(8);
        turn.Append(9);
        scheduler.Finish(turn);
        // The running sequence needs a third block, held by the turn still writing its last token: the turn, the
        // newest, gives it up; its answer is out, so it is not queued again, and nothing is parked.
        var step = scheduler.Schedule()!;
        Assert.Equal([running], step.Slices.Select(s => s.Sequence));
        Assert.Equal(SequenceStatus.Finished, turn.Status);
        Assert.False(scheduler.Parked.IsPending("s"));
        Assert.Empty(scheduler.Parked.Keys);
        Assert.Equal(0, scheduler.Preemptions);
        Assert.Equal(3, scheduler.Blocks.UsedBlocks);
    }

    [Fact]
    public void StopStringsAreCutAndTheirPrefixesHeldBack()
    {
        var filter = new StopStringFilter(["END", "xyz"]);
        Assert.Equal(("hel", false), filter.Push("hello"));
        Assert.Equal(("lo wor", false), filter.Push(" world"));
        Assert.Equal(("ld ", false), filter.Push(" EN"));
        Assert.Equal(("", true), filter.Push("D and more"));
        var plain = new StopStringFilter([]);
        Assert.Equal(("abc", false), plain.Push("abc"));
    }
}

/// <summary>Automatic prefix caching: equal prefixes share their full blocks.</summary>
public sealed class PrefixCacheTests
{
    static long _ids = 1000;

    static Sequence Seq(params int[] prompt) => new(++_ids, new GenerationRequest(prompt, SamplingParams.Greedy(4)), null);

    static void RunPrefill(Scheduler scheduler, Sequence sequence)
    {
        scheduler.Add(sequence);
        while (sequence.PendingTokens > 0) scheduler.Completed(scheduler.Schedule()!);
    }

    [Fact]
    public void ARequestSharingAPrefixReusesItsFullBlocks()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 16, BlockSize = 4 });
        var first = Seq(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
        RunPrefill(scheduler, first);
        var second = Seq(1, 2, 3, 4, 5, 6, 7, 8, 9, 99, 98);
        scheduler.Add(second);
        var step = scheduler.Schedule()!;
        Assert.Equal(8, second.CachedPromptTokens);
        Assert.Equal((8, 3), (step.Slices.Single(s => s.Sequence == second).Start, step.Slices.Single(s => s.Sequence == second).Count));
        Assert.Equal(first.BlockTable.Take(2), second.BlockTable.Take(2));
        Assert.Equal(2, scheduler.Blocks.ReferenceCount(first.BlockTable[0]));
    }

    [Fact]
    public void AFullHitStillComputesTheLastPromptToken()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 16, BlockSize = 4 });
        RunPrefill(scheduler, Seq(1, 2, 3, 4, 5, 6, 7, 8));
        var again = Seq(1, 2, 3, 4, 5, 6, 7, 8);
        scheduler.Add(again);
        var slice = scheduler.Schedule()!.Slices.Single(s => s.Sequence == again);
        Assert.Equal((4, 4, true), (slice.Start, slice.Count, slice.Samples));
    }

    [Fact]
    public void FinishedBlocksStayFindableUntilTheSpaceIsNeeded()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 4, BlockSize = 4 });
        var first = Seq(1, 2, 3, 4, 5, 6, 7, 8, 9);
        RunPrefill(scheduler, first);
        scheduler.Remove(first);
        Assert.Equal(0, scheduler.Blocks.UsedBlocks);
        Assert.Equal(2, scheduler.Blocks.CachedBlocks);

        var later = Seq(1, 2, 3, 4, 5, 6, 7, 8, 42, 43);
        scheduler.Add(later);
        scheduler.Schedule();
        Assert.Equal(8, later.CachedPromptTokens);
        scheduler.Remove(later);

        var other = Seq(50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63);
        RunPrefill(scheduler, other);
        Assert.Equal(0, other.CachedPromptTokens);
        Assert.Equal(4, scheduler.Blocks.UsedBlocks);
    }
}

/// <summary>Limits the pool imposes on one sequence, and caches dropped while being written.</summary>
public sealed class CapacityTests
{
    [Fact]
    public async Task ASequenceLongerThanThePoolEndsWithLengthInsteadOfWaitingForever()
    {
        string dir = Qwen3Cluster.Tests.Support.TestCheckpoints.Get("small-dense", Qwen3Cluster.Tests.Support.TestCheckpoints.SmallDense);
        using var model = LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 8, BlockSize = 4 });
        var options = new SchedulerOptions { NumBlocks = 8, BlockSize = 4, MaxModelLength = 40960 };
        Assert.Equal(32, options.ContextWindow);
        await using var engine = GenerationEngine.Start(model, options, []);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var result = await Qwen3Cluster.Tests.Support.EngineRunner.RunAsync(engine,
            Qwen3Cluster.Tests.Support.EngineRunner.Greedy([1, 2, 3, 4, 5], 100), timeout.Token);
        Assert.Equal(FinishReasons.Length, result.FinishReason);
        Assert.Equal(32 - 5, result.Ids.Length);
        Assert.Equal(0, engine.UsedBlocks);
        // What reaches the engine has passed its edge's check, which refuses what the pool could never hold.
        var limits = new RequestLimits(model.Config.VocabSize, options.ContextWindow);
        var tooLong = Assert.Throws<RequestError>(() => limits.Check(new GenerationRequest(Enumerable.Range(1, 32).ToArray(), SamplingParams.Greedy(1)), "prompt"));
        Assert.Equal(("prompt", ErrorKind.InvalidArgument), (tooLong.Field, tooLong.Kind));
        var tooMany = Assert.Throws<RequestError>(() => limits.Check(EngineRunner.Greedy([1, 2, 3], 100), "prompt"));
        Assert.Equal("max_tokens", tooMany.Field);
    }

    [Fact]
    public void DroppingACacheWhileItsTailIsWrittenFreesItOnceWritten()
    {
        var scheduler = new Scheduler(new SchedulerOptions { NumBlocks = 8, BlockSize = 4 });
        var sequence = new Sequence(1, new GenerationRequest([1, 2, 3, 4, 5, 6], SamplingParams.Greedy(4)) { ParkAs = "s" }, null);
        scheduler.Add(sequence);
        scheduler.Completed(scheduler.Schedule()!);
        sequence.Append(9);
        scheduler.Finish(sequence);
        Assert.Equal(SequenceStatus.Parking, sequence.Status);
        scheduler.Parked.Drop("s");
        scheduler.Completed(scheduler.Schedule()!);
        Assert.Equal(SequenceStatus.Finished, sequence.Status);
        Assert.Empty(scheduler.Parked.Keys);
        Assert.Equal(0, scheduler.Blocks.UsedBlocks);
    }
}
