using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Constraints;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Kernels;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Cli.Commands;

/// <summary><c>qwen3 generate</c>: the engine in this one process, on one prompt.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Checkpoint folder", Required = true };
        var prompt = new Option<string?>("--prompt") { Description = "Prompt text" };
        var chat = new Option<bool>("--chat") { Description = "Wrap --prompt as a user message in the chat template" };
        var noThinking = new Option<bool>("--no-thinking") { Description = "With --chat: switch thinking off" };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "Prompt as comma-separated token ids" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 256 };
        var temperature = new Option<double?>("--temperature") { Description = "0 is greedy (default: generation_config.json, else 1)" };
        var topK = new Option<int?>("--top-k") { Description = "Sample among the K most likely (0: off)" };
        var topP = new Option<double?>("--top-p") { Description = "Nucleus sampling mass" };
        var seed = new Option<ulong?>("--seed") { Description = "Seed for reproducible sampling" };
        var logprobs = new Option<int>("--logprobs") { Description = "Top alternatives to report per token", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with the tokens, text and speed" };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for tensor work" };
        var device = new Option<string>("--device") { Description = "cpu or cuda[:N]", DefaultValueFactory = _ => "cpu" };
        var streams = new Option<int>("--streams") { Description = "Decode this many copies of the prompt at once (first token varied), to measure batching", DefaultValueFactory = _ => 1 };
        var quantize = new Option<string>("--quantize") { Description = "none, or int8: Q8_0 blocks made at load (CPU)", DefaultValueFactory = _ => "none" };
        quantize.AcceptOnlyFromAmong("none", "int8");
        var jsonSchema = new Option<string?>("--json-schema") { Description = "Hold the output to this JSON Schema (its text, or a file holding it)" };
        var regex = new Option<string?>("--regex") { Description = "Hold the output to this regex (matched whole)" };
        var profile = new Option<bool>("--profile") { Description = "Print where a decode step's time goes (sections and kernel runs, per token)" };
        var command = new Command("generate", "Generate from one prompt with the single-process engine")
        {
            model, prompt, chat, noThinking, promptIds, maxTokens, temperature, topK, topP, seed, logprobs, json, threads, device, quantize, streams,
            jsonSchema, regex, profile,
        };
        command.SetAction(async (parse, ct) =>
        {
            string dir = parse.GetValue(model)!;
            ComputeThreads.Configure(parse.GetValue(threads) ?? 0);
            var config = Qwen3Config.Load(dir);
            var generation = GenerationConfig.Load(dir, config);
            var tokenizer = File.Exists(Path.Combine(dir, "tokenizer.json")) ? Qwen3Tokenizer.Load(dir) : null;
            // Reading tokenizer.json leaves a large parse behind: hand it back before the weights arrive, so the peak
            // resident set is the weights and what stays, not the weights and a garbage heap.
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            int[] ids;
            try
            {
                ids = PromptIds(parse.GetValue(prompt), parse.GetValue(promptIds), parse.GetValue(chat), parse.GetValue(noThinking), tokenizer);
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
            var defaults = SamplingParams.Defaults(generation);
            var sampling = defaults with
            {
                Temperature = parse.GetValue(temperature) ?? defaults.Temperature,
                TopK = parse.GetValue(topK) ?? defaults.TopK,
                TopP = parse.GetValue(topP) ?? defaults.TopP,
                Seed = parse.GetValue(seed),
                MaxTokens = parse.GetValue(maxTokens),
                Logprobs = parse.GetValue(logprobs),
            };
            int blockSize = 16;
            int copies = Math.Max(1, parse.GetValue(streams));
            int blocks = ((ids.Length + sampling.MaxTokens + 1 + blockSize - 1) / blockSize + 1) * copies + WarmUpBlocks;
            var loadClock = Stopwatch.StartNew();
            using var local = Terminal.WithProgress("loading", p => LocalModel.Load(dir,
                new LocalModelOptions
                {
                    NumBlocks = blocks,
                    BlockSize = blockSize,
                    Device = parse.GetValue(device)!,
                    Storage = WeightStorages.Parse(parse.GetValue(quantize), "--quantize"),
                }, Terminal.AsLoadProgress(p)));
            Terminal.Info($"loaded {config.Architecture} in {loadClock.Elapsed.TotalSeconds:F1}s");
            var options = new SchedulerOptions
            {
                NumBlocks = blocks,
                BlockSize = blockSize,
                // A long prompt runs in chunks, as the server runs it: memory stays bounded whatever its length.
                MaxBatchTokens = 512,
                MaxModelLength = config.MaxPositionEmbeddings,
            };
            OutputConstraint? constraint = (parse.GetValue(jsonSchema), parse.GetValue(regex)) switch
            {
                (null, null) => null,
                ({ } schema, null) => new OutputConstraint(ConstraintKind.JsonSchema, File.Exists(schema) ? await File.ReadAllTextAsync(schema, ct) : schema),
                (null, { } pattern) => new OutputConstraint(ConstraintKind.Regex, pattern),
                _ => null,
            };
            if (parse.GetValue(jsonSchema) is not null && parse.GetValue(regex) is not null)
            {
                Console.Error.WriteLine("Give at most one of --json-schema and --regex.");
                return 2;
            }
            if (constraint is not null && tokenizer is null)
            {
                Console.Error.WriteLine("A constraint needs the checkpoint's tokenizer.json.");
                return 2;
            }
            var vocabulary = constraint is null ? null : TokenVocabulary.For(tokenizer!);
            if (constraint is not null)
            {
                try
                {
                    vocabulary!.Compile(constraint);
                }
                catch (GrammarException e)
                {
                    Console.Error.WriteLine($"{(constraint.Kind == ConstraintKind.Regex ? "--regex" : "--json-schema")}{(e.Path is { Length: > 0 } at ? " at " + at : "")}: {e.Message}");
                    return 2;
                }
            }
            var request = new GenerationRequest(ids, sampling) { Constraint = constraint };
            new RequestLimits(config.VocabSize, options.ContextWindow).Check(request, promptField: parse.GetValue(promptIds) is null ? "--prompt" : "--prompt-ids",
                samplingField: field => "--" + field.Replace('_', '-'));
            await using var engine = GenerationEngine.Start(local, options, generation.EosTokenIds,
                tokenizer is null ? null : new DetokenizerFactory(tokenizer, skipSpecialTokens: true), vocabulary: vocabulary);
            await WarmUpAsync(engine, ids, config.VocabSize, ct);
            using var timings = new StepTimings();
            KernelProfile.Enabled = parse.GetValue(profile);
            var clock = Stopwatch.StartNew();
            var others = Enumerable.Range(1, copies - 1)
                .Select(i => RunAsync(engine, request with { PromptTokens = [(ids[0] + i) % config.VocabSize, .. ids[1..]] }, streamText: false, ct))
                .ToArray();
            var run = await RunAsync(engine, request, streamText: !parse.GetValue(json) && copies == 1, ct);
            var all = (await Task.WhenAll(others)).Append(run).ToArray();
            double aggregate = all.Sum(r => r.Tokens.Count) / clock.Elapsed.TotalSeconds;
            run = run with { Streams = copies, AggregateTokensPerSecond = Math.Round(aggregate, 2), Constraint = constraint is null ? null : timings.Report() };
            var storage = WeightStorages.Parse(parse.GetValue(quantize), "--quantize");
            bool bf16;
            using (var reader = Qwen3Cluster.Model.Checkpoint.CheckpointReader.Open(dir))
                bf16 = reader.Locate("model.embed_tokens.weight").Entry.DType == Qwen3Cluster.Model.Checkpoint.SafetensorsDType.BF16;
            run = run with { PromptIds = ids, DecodeBytesPerToken = DecodeTraffic.BytesPerToken(config, storage, bf16) };
            if (KernelProfile.Enabled) PrintProfile(run.PrefillProfile, ids.Length, run.Tokens.Count - 1);
            if (parse.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(run, JsonOptions));
            else Terminal.Info($"\n[{run.FinishReason}] prefill {run.PrefillTokensPerSecond:F1} tok/s, decode {run.DecodeTokensPerSecond:F1} tok/s");
            return 0;
        });
        return command;
    }

    static int[] PromptIds(string? text, string? idList, bool chat, bool noThinking, Qwen3Tokenizer? tokenizer)
    {
        if ((text is null) == (idList is null)) throw new ArgumentException("Give exactly one of --prompt or --prompt-ids.");
        if (idList is not null)
        {
            if (chat) throw new ArgumentException("--chat applies to --prompt, not --prompt-ids.");
            try
            {
                return idList.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            }
            catch (FormatException)
            {
                throw new ArgumentException("--prompt-ids must be comma-separated integers, e.g. 1,2,3.");
            }
        }
        if (tokenizer is null) throw new ArgumentException("This checkpoint has no tokenizer.json: give the prompt with --prompt-ids.");
        if (!chat) return tokenizer.Encode(text!);
        var template = ChatTemplate.For(tokenizer);
        if (!template.IsExact) Terminal.Info($"note: the prompt is rendered with {template.Description}");
        return tokenizer.Encode(template.Render([ChatMessage.User(text!)], addGenerationPrompt: true, enableThinking: noThinking ? false : null));
    }

    static async Task<GenerateResult> RunAsync(GenerationEngine engine, GenerationRequest request, bool streamText, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        TimeSpan? first = null;
        var tokens = new List<GeneratedToken>();
        IReadOnlyList<KernelProfile.Total> prefillProfile = [];
        var text = new System.Text.StringBuilder();
        string finish = "";
        await foreach (var update in engine.GenerateAsync(request, ct))
        {
            if (first is null && KernelProfile.Enabled)
            {
                prefillProfile = KernelProfile.Totals();
                KernelProfile.Reset();
            }
            first ??= clock.Elapsed;
            tokens.AddRange(update.Tokens);
            text.Append(update.Text);
            if (streamText) Console.Write(update.Text);
            finish = update.FinishReason ?? finish;
        }
        var total = clock.Elapsed;
        double prefill = request.PromptTokens.Count / Math.Max(first!.Value.TotalSeconds, 1e-9);
        double decode = tokens.Count > 1 ? (tokens.Count - 1) / Math.Max((total - first.Value).TotalSeconds, 1e-9) : 0;
        return new GenerateResult([], tokens, text.ToString(), finish, Math.Round(prefill, 2), Math.Round(decode, 2)) { PrefillProfile = prefillProfile };
    }

    const int WarmUpBlocks = 3;

    /// <summary>
    /// One short request before the timed one (as llama-bench warms up): the first call of every kernel and layer is
    /// compiled, and the code of the first steps is not yet optimised, which would be counted against a short prompt's
    /// prefill. Its prompt differs from the real one in the first token, so nothing of it is a cached prefix.
    /// </summary>
    static async Task WarmUpAsync(GenerationEngine engine, int[] ids, int vocab, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        int[] prompt = [.. Enumerable.Range(0, 16).Select(i => (ids[i % ids.Length] + 1 + i) % vocab)];
        var warm = new GenerationRequest(prompt, new SamplingParams { Temperature = 0, MaxTokens = 4, IgnoreEos = true });
        await foreach (var _ in engine.GenerateAsync(warm, ct)) { }
        Terminal.Info($"warmed up in {clock.Elapsed.TotalSeconds:F1}s");
    }

    /// <summary>Where prefill's and the decode steps' time went: sections and kernel runs, per token.</summary>
    static void PrintProfile(IReadOnlyList<KernelProfile.Total> prefill, int prompt, int decoded)
    {
        foreach (var (name, totals, tokens) in new[] { ("prefill", prefill, prompt), ("decode", KernelProfile.Totals(), decoded) })
        {
            Terminal.Info($"{name} profile over {tokens} tokens (ms and runs per token; sections nest, team runs are inside them):");
            foreach (var total in totals)
                Terminal.Info($"  {total.Name,-28} {total.Seconds * 1e3 / Math.Max(1, tokens),8:F3} ms {(double)total.Count / Math.Max(1, tokens),8:F2}");
        }
    }

    static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    sealed record GenerateResult(
        int[] PromptIds,
        IReadOnlyList<GeneratedToken> Tokens,
        string Text,
        string FinishReason,
        [property: JsonPropertyName("prefill_tokens_per_s")] double PrefillTokensPerSecond,
        [property: JsonPropertyName("decode_tokens_per_s")] double DecodeTokensPerSecond)
    {
        /// <summary>Weight bytes one decoded token reads (<see cref="DecodeTraffic"/>).</summary>
        public long DecodeBytesPerToken { get; init; }

        /// <summary>Streams decoded together (--streams), and all their tokens over the whole run's time.</summary>
        public int Streams { get; init; } = 1;

        [JsonPropertyName("aggregate_tokens_per_s")] public double AggregateTokensPerSecond { get; init; }

        /// <summary>With a constraint: what its masks cost against the steps they ran in.</summary>
        public StepTimings.Summary? Constraint { get; init; }

        /// <summary>With --profile: where prefill's time went (printed, not serialised).</summary>
        [JsonIgnore] public IReadOnlyList<KernelProfile.Total> PrefillProfile { get; init; } = [];
    }
}
