using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// A model replica's decode loop: schedule -> run the stages -> sample -> postprocess, one step at a time for
/// every active sequence. Requests join through <see cref="GenerateAsync"/> from any thread; the loop alone
/// touches the scheduler.
/// </summary>
public sealed class GenerationEngine : IAsyncDisposable
{
    readonly IModelExecutor _executor;
    readonly Scheduler _scheduler;
    readonly Sampler _sampler = new();
    readonly OutputProcessor _output;
    readonly ITextDecoderFactory? _decoders;
    readonly int _vocabSize;
    readonly ConcurrentQueue<Sequence> _incoming = new();
    readonly ConcurrentQueue<Sequence> _aborted = new();
    readonly ConcurrentQueue<string> _dropParked = new();
    readonly SemaphoreSlim _wake = new(0);
    readonly CancellationTokenSource _stopping = new();
    readonly Dictionary<long, Sequence> _live = [];
    Task? _loop;
    long _nextId;
    int _failedSteps;
    const int MaxFailedSteps = 4;

    public GenerationEngine(IModelExecutor executor, SchedulerOptions options, int vocabSize,
        IReadOnlyCollection<int> eosTokenIds, ITextDecoderFactory? decoders)
    {
        _executor = executor;
        _scheduler = new Scheduler(options);
        _output = new OutputProcessor(eosTokenIds, options.ContextWindow);
        _decoders = decoders;
        _vocabSize = vocabSize;
        EngineMetrics.Register(this);
    }

    public SchedulerOptions Options => _scheduler.Options;
    /// <summary>Blocks in use right now (parked caches included).</summary>
    public int UsedBlocks => _scheduler.Blocks.UsedBlocks;
    public int ActiveSequences => _live.Count;
    public int WaitingSequences => _scheduler.WaitingCount;
    public long Steps { get; private set; }
    public long Preemptions => _scheduler.Preemptions;
    public IReadOnlyCollection<string> ParkedKeys => _scheduler.Parked.Keys.ToArray();

    /// <summary>Starts the loop (once) on the caller's task scheduler (an Orleans activation keeps it on its own).</summary>
    public void Start()
    {
        if (Volatile.Read(ref _loop) is not null) return;
        var loop = new Task<Task>(RunAsync);
        if (Interlocked.CompareExchange(ref _loop, loop.Unwrap(), null) is null) loop.Start(TaskScheduler.Current);
    }

    /// <summary>Checks a request against the model; throws <see cref="InvalidRequestException"/> naming the field.</summary>
    public void Validate(GenerationRequest request)
    {
        if (request.PromptTokens.Count == 0) throw new InvalidRequestException("prompt", "must not be empty");
        for (int i = 0; i < request.PromptTokens.Count; i++)
            if (request.PromptTokens[i] < 0 || request.PromptTokens[i] >= _vocabSize)
                throw new InvalidRequestException("token_ids",
                    $"token {request.PromptTokens[i]} at index {i} is outside the vocabulary [0, {_vocabSize})");
        if (request.PromptTokens.Count >= Options.ContextWindow)
            throw new InvalidRequestException("prompt",
                $"{request.PromptTokens.Count} tokens; the context window is {Options.ContextWindow}");
        if (request.Sampling.Validate(_vocabSize) is { } problem)
            throw new InvalidRequestException(problem.Field, problem.Message);
    }

    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Validate(request);
        var sequence = new Sequence(Interlocked.Increment(ref _nextId), request, _decoders?.Create());
        _incoming.Enqueue(sequence);
        _wake.Release();
        Start();
        bool finished = false;
        try
        {
            await foreach (var update in sequence.Updates.Reader.ReadAllAsync(cancellationToken))
            {
                finished = update.IsFinal;
                yield return update;
            }
        }
        finally
        {
            if (!finished)
            {
                _aborted.Enqueue(sequence);
                _wake.Release();
            }
        }
    }

    /// <summary>Drops a parked cache (a deleted session) at the loop's next turn.</summary>
    public void DropParked(string key)
    {
        _dropParked.Enqueue(key);
        _wake.Release();
    }

    async Task RunAsync()
    {
        var stop = _stopping.Token;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                DrainQueues();
                if (!_scheduler.HasWork)
                {
                    await _wake.WaitAsync(stop);
                    continue;
                }
                try
                {
                    await StepAsync(stop);
                }
                catch (Exception e) when (e is not OperationCanceledException || !stop.IsCancellationRequested)
                {
                    // A bug in one step must not end the loop every later request depends on.
                    _scheduler.ResetCache();
                    FailAll(e);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            FailAll(new OperationCanceledException("The engine stopped."));
        }
    }

    void DrainQueues()
    {
        while (_dropParked.TryDequeue(out var key)) _scheduler.DropParked(key);
        while (_incoming.TryDequeue(out var sequence))
        {
            try
            {
                _scheduler.Add(sequence);
                _live[sequence.Id] = sequence;
            }
            catch (Exception e)
            {
                sequence.Updates.Writer.TryComplete(e);
                sequence.Dispose();
            }
        }
        while (_aborted.TryDequeue(out var sequence))
        {
            if (!_live.Remove(sequence.Id)) continue;
            if (sequence.Status != SequenceStatus.Finished) _scheduler.Remove(sequence);
            sequence.Updates.Writer.TryComplete();
            sequence.Dispose();
        }
    }

    /// <summary>schedule -> run the stages -> sample -> postprocess.</summary>
    async Task StepAsync(CancellationToken cancellationToken)
    {
        var step = _scheduler.Schedule();
        ReapPreempted();
        if (step is null)
        {
            // Work that cannot run yet (a session turn waiting for its previous turn's cache): wait for news.
            await _wake.WaitAsync(TimeSpan.FromMilliseconds(20), cancellationToken);
            return;
        }
        IReadOnlyList<SampledToken> sampled;
        long started = Stopwatch.GetTimestamp();
        try
        {
            using var logits = await _executor.ExecuteAsync(step.Context, step.InputIds, cancellationToken);
            sampled = _sampler.Sample(logits, step.Sampling.Select(s => (s.Sequence.Sampling, s.Sequence.SamplerState)).ToArray());
        }
        catch (KvCacheLostException)
        {
            _scheduler.ResetCache();
            ReapPreempted();
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // A stage that failed mid-step may have written part of the step's KV: every cache is suspect, so all
            // sequences start over. A transient failure (a silo died and its grains are being re-placed) then only
            // costs time; a persistent one fails the requests.
            _scheduler.ResetCache();
            ReapPreempted();
            if (++_failedSteps > MaxFailedSteps) FailAll(e);
            else await Task.Delay(TimeSpan.FromMilliseconds(250 << _failedSteps), cancellationToken);
            return;
        }
        _failedSteps = 0;
        Steps++;
        EngineMetrics.StepSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        EngineMetrics.GeneratedTokens.Add(sampled.Count);
        _scheduler.Completed(step);
        for (int i = 0; i < sampled.Count; i++)
        {
            var sequence = step.Sampling[i].Sequence;
            if (_output.Apply(sequence, sampled[i])) Finish(sequence);
        }
        foreach (var sequence in _scheduler.FlushedTails()) Finish(sequence);
    }

    void Finish(Sequence sequence)
    {
        if (!sequence.FlushingTail)
        {
            EngineMetrics.Requests.Add(1, new KeyValuePair<string, object?>("finish_reason", sequence.FinishReason));
            EngineMetrics.PromptTokens.Add(sequence.PromptLength);
            EngineMetrics.CachedPromptTokens.Add(sequence.CachedPromptTokens);
        }
        _scheduler.Finish(sequence);
        if (sequence.Status != SequenceStatus.Finished) return;
        _live.Remove(sequence.Id);
        sequence.Dispose();
    }

    /// <summary>Sequences that had already answered and were only writing their last token for a session, then lost their cache.</summary>
    void ReapPreempted()
    {
        foreach (var sequence in _live.Values.Where(s => s.Status == SequenceStatus.Finished).ToList())
        {
            _live.Remove(sequence.Id);
            sequence.Dispose();
        }
    }

    void FailAll(Exception error)
    {
        foreach (var sequence in _live.Values)
        {
            if (sequence.Status != SequenceStatus.Finished) _scheduler.Remove(sequence);
            sequence.Updates.Writer.TryComplete(error);
            sequence.Dispose();
        }
        _live.Clear();
        _failedSteps = 0;
    }

    public async ValueTask DisposeAsync()
    {
        EngineMetrics.Unregister(this);
        _stopping.Cancel();
        if (_loop is not null)
        {
            try { await _loop; } catch (OperationCanceledException) { }
        }
        _stopping.Dispose();
    }
}
