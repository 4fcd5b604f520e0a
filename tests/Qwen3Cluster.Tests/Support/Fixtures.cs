namespace Qwen3Cluster.Tests.Support;

/// <summary>Paths of the files under tests/fixtures, copied next to the test assembly.</summary>
public static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "fixtures");

    /// <summary>The reference tiny MoE checkpoint (see fixtures/tiny-moe.README.md for where its numbers come from).</summary>
    public static string TinyMoe => Path.Combine(Root, "tiny-moe");

    public static string File(string name) => Path.Combine(Root, name);
}
