using Qwen3Cluster.Model.Engine;
using Spectre.Console;

namespace Qwen3Cluster.Cli;

/// <summary>Progress for long work: a live bar on a terminal, a few plain lines on stderr otherwise.</summary>
public static class Terminal
{
    static bool Interactive => !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    static readonly IAnsiConsole Err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Runs <paramref name="work"/> while showing how far it got; <paramref name="work"/> reports (done, total, what).</summary>
    public static T WithProgress<T>(string title, Func<IProgress<(long Done, long Total, string What)>, T> work)
    {
        if (!Interactive)
        {
            var lines = new PlainProgress(title);
            var result = work(lines);
            lines.Done();
            return result;
        }
        T value = default!;
        Err.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(title);
                value = work(new Progress(task));
                task.Value = task.MaxValue;
            });
        return value;
    }

    public static IProgress<LoadProgress> AsLoadProgress(IProgress<(long Done, long Total, string What)> progress) =>
        new Adapter<LoadProgress>(p => progress.Report((p.Loaded, p.Total, p.Tensor)));

    public static void Info(string message) => Console.Error.WriteLine(message);

    sealed class Progress(ProgressTask task) : IProgress<(long Done, long Total, string What)>
    {
        public void Report((long Done, long Total, string What) value)
        {
            task.MaxValue = Math.Max(1, value.Total);
            task.Value = value.Done;
        }
    }

    sealed class PlainProgress(string title) : IProgress<(long Done, long Total, string What)>
    {
        readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
        int _lastDecile = -1;

        public void Report((long Done, long Total, string What) value)
        {
            int decile = value.Total <= 0 ? 0 : (int)(value.Done * 10 / value.Total);
            if (decile == _lastDecile) return;
            _lastDecile = decile;
            Console.Error.WriteLine($"{title}: {value.Done}/{value.Total} ({decile * 10}%)");
        }

        public void Done() => Console.Error.WriteLine($"{title}: done in {_clock.Elapsed.TotalSeconds:F1}s");
    }

    sealed class Adapter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
