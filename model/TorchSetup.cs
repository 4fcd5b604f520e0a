using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Qwen3Cluster.Model;

/// <summary>Process-wide libtorch settings, applied when this assembly loads, before any tensor exists.</summary>
static class TorchSetup
{
    /// <summary>
    /// libtorch's CPU allocator backs large tensors with transparent huge pages only when THP_MEM_ALLOC_ENABLE is
    /// set; where the kernel leaves THP to madvise (Debian's default) weights otherwise sit on 4 KiB pages and
    /// prefill of bench-moe runs at half speed (measured: 66-79 vs 154 tokens/s). libtorch reads the variable
    /// with getenv, which does not see Environment.SetEnvironmentVariable, hence setenv. A value the user set wins.
    /// </summary>
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Must run before the first tensor of any host.")]
    internal static void EnableHugePages()
    {
        if (OperatingSystem.IsLinux()) _ = setenv("THP_MEM_ALLOC_ENABLE", "1", 0);
    }

    [DllImport("libc", CharSet = CharSet.Ansi)]
    static extern int setenv(string name, string value, int overwrite);
}
