using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Kernels;
using Qwen3Cluster.Model.Sampling;

namespace Qwen3Cluster.Model.Engine;

/// <summary>
/// A model replica's decode loop: schedule -> run the stages -> constrain -> sample -> postprocess, one step at a time for
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
    readonly TokenVocabulary? _vocabulary;
    readonly ConstraintMasks _masks;
    readonly ConcurrentQueue<Sequence> _incoming = new();
    readonly ConcurrentQueue<Sequence> _aborted = new();
    readonly ConcurrentQueue<string> _dropParked = new();
    readonly SemaphoreSlim _wake = new(0);
    readonly CancellationTokenSource _stopping = new();
    /// <summary>Sequences whose client still waits for updates.</summary>
    readonly Dictionary<long, Sequence> _live = [];
    Task _loop = Task.CompletedTask;
    long _nextId;
    /// <summary>When the run of failed steps now going on began (a <see cref="Stopwatch"/> timestamp), or 0.</summary>
    long _failingSince;
    int _failedSteps;

    GenerationEngine(IModelExecutor executor, SchedulerOptions options, IReadOnlyCollection<int> eosTokenIds, ITextDecoderFactory? decoders,
        string name, TokenVocabulary? vocabulary)
    {
        _vocabulary = vocabulary;
        _masks = new ConstraintMasks(eosTokenIds, options.ContextWindow);
        Name = name;
        _executor = executor;
        _scheduler = new Scheduler(options);
        _output = new OutputProcessor(eosTokenIds, options.ContextWindow);
        _decoders = decoders;
    }

    /// <summary>
    /// Makes an engine and starts its loop on the caller's task scheduler (an Orleans activation keeps the loop on
    /// its own thread). <paramref name="decoders"/> turn tokens into text; without them text is empty.
    /// <paramref name="name"/> labels its metrics (<c>replica</c>). <paramref name="vocabulary"/> lets requests hold their
    /// output to a constraint; without it a constrained request is refused.
    /// </summary>
    public static GenerationEngine Start(IModelExecutor executor, SchedulerOptions options, IReadOnlyCollection<int> eosTokenIds,
        ITextDecoderFactory? decoders = null, string name = "local", TokenVocabulary? vocabulary = null)
    {
        var engine = new GenerationEngine(executor, options, eosTokenIds, decoders, name, vocabulary);
        engine._loop = Task.Factory.StartNew(engine.LoopAsync, CancellationToken.None, TaskCreationOptions.None, TaskScheduler.Current).Unwrap();
        EngineMetrics.Register(engine);
        return engine;
    }

    public SchedulerOptions Options => _scheduler.Options;
    /// <summary>What its metrics are labelled with (<c>replica</c>).</summary>
    public string Name { get; }
    public int RunningSequences => _scheduler.RunningCount;
    /// <summary>Blocks in use right now (parked caches included).</summary>
    public int UsedBlocks => _scheduler.Blocks.UsedBlocks;
    public int ActiveSequences => _live.Count;
    public int WaitingSequences => _scheduler.WaitingCount;
    public long Steps { get; private set; }
    public long Preemptions => _scheduler.Preemptions;
    public IReadOnlyCollection<string> ParkedKeys => _scheduler.Parked.Keys.ToArray();

    /// <summary>Streams a generation of a request that its edge has checked (<see cref="RequestLimits"/>).</summary>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var sequence = new Sequence(Interlocked.Increment(ref _nextId), request, _decoders?.Create(), StartConstraint(request.Constraint));
        _incoming.Enqueue(sequence);
        _wake.Release();
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

    ConstraintState? StartConstraint(OutputConstraint? constraint)
    {
        if (constraint is null) return null;
        if (_vocabulary is null) throw new RequestError(ErrorKind.FailedPrecondition, "response_format", "this model has no tokenizer: its output cannot be constrained");
        try
        {
            return new ConstraintState(_vocabulary.Compile(constraint));
        }
        catch (GrammarException e)
        {
            throw RequestError.Invalid(e.Path is { Length: > 0 } path ? $"response_format.{path}" : "response_format", e.Message);
        }
    }

    /// <summary>Drops a parked cache (a deleted session) at the loop's next turn.</summary>
    public void DropParked(string key)
    {
        _dropParked.Enqueue(key);
        _wake.Release();
    }

    async Task LoopAsync()
    {
        // Steps are traces of their own (linked to their requests), not children of whatever call started the loop.
        Activity.Current = null;
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
        while (_dropParked.TryDequeue(out var key)) _scheduler.Parked.Drop(key);
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
            _scheduler.Remove(sequence);
            sequence.Updates.Writer.TryComplete();
            sequence.Dispose();
        }
    }

    /// <summary>schedule -> run the stages -> constrain -> sample -> postprocess.</summary>
    async Task StepAsync(CancellationToken cancellationToken)
    {
        var step = _scheduler.Schedule();
        if (step is null)
        {
            // Work that cannot run yet (a session turn waiting for its previous turn's cache): wait for news.
            await _wake.WaitAsync(TimeSpan.FromMilliseconds(20), cancellationToken);
            return;
        }
        var sampled = await RunAsync(step, cancellationToken);
        if (sampled is null) return;
        _scheduler.Completed(step);
        for (int i = 0; i < sampled.Count; i++)
        {
            var sequence = step.Sampling[i].Sequence;
            if (_output.Apply(sequence, sampled[i])) Finish(sequence);
        }
    }

    /// <summary>The step's sampled tokens, or null when it failed and every cache was dropped, to be recomputed.</summary>
    async Task<IReadOnlyList<SampledToken>?> RunAsync(ScheduledStep step, CancellationToken cancellationToken)
    {
        long started = Stopwatch.GetTimestamp();
        using var activity = EngineMetrics.StartStep(step, Name);
        try
        {
            long forward = KernelProfile.Start();
            using var logits = await _executor.ExecuteAsync(step.Context, step.InputIds, cancellationToken);
            KernelProfile.Stop("forward", forward);
            IReadOnlyList<SampledToken> sampled;
            using (KernelProfile.Measure("sample"))
            {
                _masks.Apply(logits, step.Sampling);
                using var sampleClock = KernelProfile.Measure("sample.sampler");
                sampled = _sampler.Sample(logits, step.Sampling.Select(s => (s.Sequence.Sampling, s.Sequence.SamplerState)).ToArray());
            }
            _failingSince = 0;
            _failedSteps = 0;
            Steps++;
            EngineMetrics.StepSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
            if (KernelProfile.Enabled) KernelProfile.Stop("step", started);
            EngineMetrics.GeneratedTokens.Add(sampled.Count);
            return sampled;
        }
        catch (KvCacheLostException)
        {
            activity?.SetStatus(ActivityStatusCode.Error, "a stage lost its KV cache");
            _scheduler.ResetCache();
            return null;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // A stage that failed mid-step may have written part of the step's KV: every cache is suspect, so all
            // sequences start over from their tokens (prompt + generated so far). A transient failure (a silo died
            // and its grains are being re-placed) then only costs time; one that outlasts the recovery window fails
            // the requests. Retries back off to at most a second apart, so the step resumes soon after the grains do.
            activity?.SetStatus(ActivityStatusCode.Error, e.Message);
            _scheduler.ResetCache();
            if (_failingSince == 0) _failingSince = Stopwatch.GetTimestamp();
            if (Stopwatch.GetElapsedTime(_failingSince) >= _scheduler.Options.RecoveryTimeout) FailAll(e);
            else await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1000, 50 << Math.Min(++_failedSteps, 5))), cancellationToken);
            return null;
        }
    }

    /// <summary>
    /// The sequence has answered: the scheduler frees or parks its cache, and then its stream completes, so a client that
    /// sees the end of its stream sees the blocks it held already given back (the stream used to complete first, and a
    /// test reading the pool right after its streams ended now and then found their blocks still held).
    /// </summary>
    void Finish(Sequence sequence)
    {
        EngineMetrics.Finished(sequence);
        _live.Remove(sequence.Id);
        _scheduler.Finish(sequence);
        sequence.Updates.Writer.TryComplete();
        sequence.Dispose();
    }

    void FailAll(Exception error)
    {
        foreach (var sequence in _live.Values)
        {
            _scheduler.Remove(sequence);
            sequence.Updates.Writer.TryComplete(error);
            sequence.Dispose();
        }
        _live.Clear();
        _failingSince = 0;
        _failedSteps = 0;
    }

    public async ValueTask DisposeAsync()
    {
        EngineMetrics.Unregister(this);
        _stopping.Cancel();
        try { await _loop; } catch (OperationCanceledException) { }
        _stopping.Dispose();
    }
}
