namespace Qwen3Cluster.Model.Kernels;

/// <summary>The process's compute threads: the kernels' team, and libtorch kept to the caller's thread beside it.</summary>
public static class ComputeThreads
{
    /// <summary>
    /// Sizes the team to <paramref name="threads"/> (0 keeps one per core). libtorch gets one thread: what is left to it on
    /// the CPU (sampling, small element-wise ops) is cheap, and its OpenMP workers, spinning after every op, would
    /// otherwise take the cores from the team while it runs the products (measured: 9% of a decode step's CPU time).
    /// </summary>
    public static void Configure(int threads)
    {
        if (threads > 0) ThreadTeam.Configure(threads);
        TorchSharp.torch.set_num_threads(1);
    }
}
