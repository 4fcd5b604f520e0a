using System.CommandLine;
using System.Text.Json;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Kernels;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Model.Tokenization;
using static TorchSharp.torch;

namespace Qwen3Cluster.Cli.Commands;

/// <summary>
/// <c>qwen3 quantization-report</c>: how far int8 (Q8_0) weights move a checkpoint's predictions. A fixed set of prompts
/// is continued greedily by the model at its stored width; then both models read prompt + continuation in one pass,
/// and at every continuation position the report compares their greedy tokens and the log-probabilities of the
/// reference's top five. Measured and reported, not judged against a threshold.
/// </summary>
public static class QuantizationReportCommand
{
    static readonly string[] Sentences =
    [
        "The quick brown fox jumps over the lazy dog.",
        "Explain in one paragraph how a mixture-of-experts layer routes each token.",
        "Write a short poem about a river that runs uphill.",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
        "In 1905, Albert Einstein published four papers that",
        "List three differences between TCP and UDP.",
        "Translate to French: The weather is lovely today, let us walk to the harbour.",
        "A train leaves the station at 3 pm travelling at 80 km/h; another leaves at 4 pm at 100 km/h. When does",
    ];

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder", Required = true };
        var tokens = new Option<int>("--tokens") { Description = "Greedy tokens continued after each prompt", DefaultValueFactory = _ => 32 };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for tensor work" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON" };
        var command = new Command("quantization-report", "Measure how int8 weights change a checkpoint's greedy tokens and log-probabilities")
        {
            model, tokens, threads, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            ComputeThreads.Configure(parse.GetValue(threads) ?? 0);
            string dir = parse.GetValue(model)!;
            int continuation = Math.Max(1, parse.GetValue(tokens));
            var report = await RunAsync(dir, continuation, ct);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
            }
            else
            {
                Console.WriteLine($"{report.Prompts} prompts, {report.Positions} positions: greedy tokens agree at {report.GreedyAgreement:P1}; " +
                    $"top-5 log-prob difference max {report.MaxTop5LogprobDifference:F4}, mean {report.MeanTop5LogprobDifference:F4}");
            }
            return 0;
        });
        return command;
    }

    public sealed record Report(string Model, int Prompts, int Positions, double GreedyAgreement, double MaxTop5LogprobDifference,
        double MeanTop5LogprobDifference);

    static async Task<Report> RunAsync(string dir, int continuation, CancellationToken ct)
    {
        var config = Qwen3Config.Load(dir);
        var prompts = Prompts(dir, config);
        int longest = prompts.Max(p => p.Length) + continuation + 1;
        int blockSize = 16, blocks = (longest + blockSize - 1) / blockSize + 1;
        var options = new LocalModelOptions { NumBlocks = blocks, BlockSize = blockSize };

        // The reference's continuations and its log-probabilities at every continuation position.
        var sequences = new List<int[]>();
        var referenceLogprobs = new List<Tensor>();
        using (var stored = Terminal.WithProgress("loading (stored width)", p => LocalModel.Load(dir, options, Terminal.AsLoadProgress(p))))
        {
            var scheduler = new SchedulerOptions { NumBlocks = blocks, BlockSize = blockSize, MaxBatchTokens = 512 };
            await using (var engine = GenerationEngine.Start(stored, scheduler, []))
            {
                foreach (var prompt in prompts)
                {
                    var ids = new List<int>(prompt);
                    await foreach (var update in engine.GenerateAsync(new GenerationRequest(prompt, SamplingParams(continuation)), ct))
                        ids.AddRange(update.Tokens.Select(t => t.Id));
                    sequences.Add([.. ids]);
                }
            }
            for (int i = 0; i < prompts.Count; i++) referenceLogprobs.Add(await LogprobsAsync(stored, sequences[i], prompts[i].Length, blockSize, ct));
        }
        using var quantized = Terminal.WithProgress("loading (int8)", p => LocalModel.Load(dir, options with { Storage = WeightStorage.Int8 }, Terminal.AsLoadProgress(p)));
        int positions = 0, agree = 0;
        double maxDiff = 0, sumDiff = 0;
        long compared = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            using var reference = referenceLogprobs[i];
            using var actual = await LogprobsAsync(quantized, sequences[i], prompts[i].Length, blockSize, ct);
            var (values, ids) = reference.topk(5, dim: -1);
            using var actualAtIds = actual.gather(1, ids);
            using var diff = (actualAtIds - values).abs();
            maxDiff = Math.Max(maxDiff, diff.max().item<float>());
            sumDiff += diff.sum().item<float>();
            compared += diff.numel();
            using var referenceArgmax = reference.argmax(-1);
            using var actualArgmax = actual.argmax(-1);
            agree += (int)referenceArgmax.eq(actualArgmax).sum().item<long>();
            positions += (int)reference.shape[0];
            values.Dispose();
            ids.Dispose();
        }
        return new Report(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))), prompts.Count, positions,
            Math.Round((double)agree / positions, 4), Math.Round(maxDiff, 5), Math.Round(sumDiff / compared, 5));
    }

    static Qwen3Cluster.Model.Sampling.SamplingParams SamplingParams(int tokens) => new() { Temperature = 0, MaxTokens = tokens, IgnoreEos = true };

    /// <summary>Log-softmax [positions, V] at the rows that predict the continuation (from the prompt's last token on).</summary>
    static async Task<Tensor> LogprobsAsync(LocalModel model, int[] sequence, int promptLength, int blockSize, CancellationToken ct)
    {
        int blocks = (sequence.Length + blockSize - 1) / blockSize;
        var rows = Enumerable.Range(promptLength - 1, sequence.Length - promptLength).ToArray();
        var context = new ForwardContext([new SequenceSlice(0, sequence.Length, Enumerable.Range(0, blocks).ToArray())], blockSize, rows);
        using var logits = await model.ExecuteAsync(context, sequence, ct);
        return logits.log_softmax(-1);
    }

    /// <summary>The built-in sentences through the checkpoint's tokenizer, or, without one, fixed pseudo-random ids.</summary>
    static List<int[]> Prompts(string dir, Qwen3Config config)
    {
        if (File.Exists(Path.Combine(dir, "tokenizer.json")))
        {
            var tokenizer = Qwen3Tokenizer.Load(dir);
            return Sentences.Select(s => tokenizer.Encode(s)).Where(ids => ids.All(id => id < config.VocabSize)).ToList();
        }
        var random = new Random(20260101);
        return Enumerable.Range(0, Sentences.Length)
            .Select(i => Enumerable.Range(0, 16 + 6 * i).Select(_ => random.Next(Math.Min(config.VocabSize, 1000), config.VocabSize)).ToArray())
            .ToList();
    }
}
