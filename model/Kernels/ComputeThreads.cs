namespace Qwen3Cluster.Model.Kernels;

/// <summary>The process's compute threads: the kernels' team and libtorch's own pool, sized together.</summary>
public static class ComputeThreads
{
    /// <summary>
    /// Sizes the team and libtorch to <paramref name="threads"/> (0 keeps one per core). They take turns, never running
    /// at once: a step is a sequence of torch ops and kernel products, each of which uses every thread.
    /// </summary>
    public static void Configure(int threads)
    {
        if (threads <= 0) return;
        ThreadTeam.Configure(threads);
        TorchSharp.torch.set_num_threads(threads);
    }
}
