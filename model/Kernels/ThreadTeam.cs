namespace Qwen3Cluster.Model.Kernels;

/// <summary>A piece of parallel work: chunks 0 .. count-1, each run exactly once by some member of the team.</summary>
public abstract class TeamJob
{
    public abstract void Execute(int chunk);
}

/// <summary>
/// One persistent team of worker threads for the process's kernels (ggml's model): the caller works too, chunks
/// are handed out through an atomic counter, and idle workers spin briefly before they sleep, so a step's many
/// small products cost no thread start and no task each. A run ends when its last chunk is done, whether or not
/// every worker came: one that wakes late finds no chunk left and waits for the next run. One job runs at a time; a
/// caller that finds the team busy waits its turn.
/// </summary>
public sealed class ThreadTeam : IDisposable
{
    const int SpinIterations = 200;
    static ThreadTeam _shared = new(Math.Max(1, Environment.ProcessorCount));

    readonly Thread[] _workers;
    /// <summary>One wake-up per worker, so no worker can take another's.</summary>
    readonly SemaphoreSlim[] _wake;
    readonly object _gate = new();
    volatile RunState? _current;
    long _generation;
    volatile bool _stopping;

    /// <summary>One run's job and counters: a worker holding an older one finds it finished and leaves it alone.</summary>
    sealed class RunState(TeamJob job, int chunks)
    {
        public readonly TeamJob Job = job;
        public readonly int Chunks = chunks;
        public int Next;
        public int Done;
        public Exception? Error;
    }

    public ThreadTeam(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), "A team has at least one thread (its caller).");
        Threads = threads;
        _workers = new Thread[threads - 1];
        _wake = new SemaphoreSlim[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            var wake = _wake[i] = new SemaphoreSlim(0);
            _workers[i] = new Thread(() => Work(wake)) { IsBackground = true, Name = $"qwen3-kernel-{i + 1}" };
            _workers[i].Start();
        }
    }

    /// <summary>The team kernels use; sized by <c>Qwen3:Silo:Threads</c> (or <c>--threads</c>), else one per core.</summary>
    public static ThreadTeam Shared => _shared;

    /// <summary>Replaces the shared team with one of <paramref name="threads"/> threads (the caller counted).</summary>
    public static void Configure(int threads)
    {
        if (threads == _shared.Threads) return;
        var old = Interlocked.Exchange(ref _shared, new ThreadTeam(threads));
        old.Dispose();
    }

    /// <summary>Threads that run a job, the caller's included.</summary>
    public int Threads { get; }

    /// <summary>Runs chunks 0 .. <paramref name="chunks"/>-1 of <paramref name="job"/> on the team and returns when all are done.</summary>
    public void Run(int chunks, TeamJob job)
    {
        if (chunks <= 0) return;
        long started = KernelProfile.Start();
        try
        {
            RunChunks(chunks, job);
        }
        finally
        {
            KernelProfile.Stop("team:" + job.GetType().Name, started);
        }
    }

    void RunChunks(int chunks, TeamJob job)
    {
        if (chunks == 1 || _workers.Length == 0)
        {
            for (int c = 0; c < chunks; c++) job.Execute(c);
            return;
        }
        lock (_gate)
        {
            var run = new RunState(job, chunks);
            _current = run;
            Interlocked.Increment(ref _generation);
            WakeAll();
            Drain(run);
            var spin = new SpinWait();
            while (Volatile.Read(ref run.Done) < chunks) spin.SpinOnce(sleep1Threshold: -1);
            _current = null;
            if (run.Error is { } error) throw new AggregateException("A kernel chunk failed.", error);
        }
    }

    static void Drain(RunState run)
    {
        for (int c = Interlocked.Increment(ref run.Next) - 1; c < run.Chunks; c = Interlocked.Increment(ref run.Next) - 1)
        {
            try
            {
                run.Job.Execute(c);
            }
            catch (Exception e)
            {
                run.Error ??= e;
            }
            Interlocked.Increment(ref run.Done);
        }
    }

    void WakeAll()
    {
        // A worker that is still spinning has nothing to wake; one token at most waits for each.
        foreach (var wake in _wake)
            if (wake.CurrentCount == 0) wake.Release();
    }

    void Work(SemaphoreSlim wake)
    {
        long seen = 0;
        while (true)
        {
            // A step runs its products back to back: spin a little for the next one before sleeping.
            for (int i = 0; i < SpinIterations && Volatile.Read(ref _generation) == seen && !_stopping; i++) Thread.SpinWait(8);
            if (Volatile.Read(ref _generation) == seen && !_stopping && !wake.Wait(0))
            {
                KernelProfile.Count("team:sleep");
                wake.Wait();
            }
            if (_stopping) return;
            long generation = Volatile.Read(ref _generation);
            if (generation == seen) continue;
            seen = generation;
            if (_current is { } run) Drain(run);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var wake in _wake) wake.Release();
        foreach (var w in _workers) w.Join();
        foreach (var wake in _wake) wake.Dispose();
    }
}
