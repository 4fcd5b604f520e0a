using Qwen3Cluster.Model.Constraints;
using Microsoft.Extensions.Options;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Kernels;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Model.Tokenization;
using TorchSharp;

namespace Qwen3Cluster.Grains.Hosting;

/// <summary>
/// The served model as this silo deploys it: its checkpoint folder, config, generation defaults and tokenizer (read
/// on first use), how it is cut into stages and expert groups, the replicas' KV pool and batching limits, and the
/// device this silo computes on. Grains load their share of the weights from <see cref="Path"/>.
/// </summary>
public sealed class ModelDeployment
{
    readonly Lazy<Qwen3Config> _config;
    readonly Lazy<GenerationConfig> _generation;
    readonly Lazy<Qwen3Tokenizer?> _tokenizer;
    readonly Lazy<TokenVocabulary?> _vocabulary;

    public ModelDeployment(IOptions<ModelOptions> options, IOptions<SiloRoleOptions> silo)
    {
        Options = options.Value;
        Silo = silo.Value;
        _config = new(() => Qwen3Config.Load(Options.Path));
        _generation = new(() => GenerationConfig.Load(Options.Path, Config));
        _tokenizer = new(() => File.Exists(System.IO.Path.Combine(Options.Path, "tokenizer.json")) ? Qwen3Tokenizer.Load(Options.Path) : null);
        _vocabulary = new(() => Tokenizer is { } t ? TokenVocabulary.For(t) : null);
    }

    public ModelOptions Options { get; }
    public SiloRoleOptions Silo { get; }
    public string Name => Options.ResolvedName;
    public string Path => Options.Path;
    public Qwen3Config Config => _config.Value;
    public GenerationConfig Generation => _generation.Value;
    /// <summary>The checkpoint's tokenizer, or null when it has no tokenizer.json (prompts then come as token ids).</summary>
    public Qwen3Tokenizer? Tokenizer => _tokenizer.Value;
    /// <summary>The tokenizer's vocabulary as output constraints see it (and their compiled cache), or null without a tokenizer.</summary>
    public TokenVocabulary? Vocabulary => _vocabulary.Value;
    /// <summary>The silo's device, parsed once: every tensor a call brings in is made on it.</summary>
    public torch.Device Device => _device ??= new(Silo.Device);
    torch.Device? _device;

    /// <summary>How this silo keeps the matrices it hosts (<c>Qwen3:Model:Quantize</c>).</summary>
    public WeightStorage Storage => WeightStorages.Parse(Options.Quantize, "Qwen3:Model:Quantize");

    public StageRange[] Stages => StageRange.Split(Config.NumHiddenLayers, Options.Stages);

    /// <summary>A stage's expert groups (<c>Qwen3:Model:ExpertGroups</c> ranges, each cut into <c>ExpertSlices</c>), by group index.</summary>
    public ExpertRange[] ExpertGroups => _expertGroups ??= SplitExperts(Config, Options);
    ExpertRange[]? _expertGroups;

    /// <summary>The expert groups <paramref name="options"/> cut <paramref name="config"/>'s experts into; an option that cannot be met is named.</summary>
    public static ExpertRange[] SplitExperts(Qwen3Config config, ModelOptions options)
    {
        if (!config.IsMoe || config.NumExperts <= 0) return [];
        if (options.ExpertGroups < 1 || options.ExpertGroups > config.NumExperts)
            throw new ArgumentException($"Qwen3:Model:ExpertGroups: cannot split {config.NumExperts} experts into {options.ExpertGroups} groups.");
        int slices = options.ExpertSlices, inner = config.MoeIntermediateSize;
        if (slices < 1) throw new ArgumentException($"Qwen3:Model:ExpertSlices: {slices} is not a number of slices (1: whole experts).");
        if (inner % slices != 0)
        {
            throw new ArgumentException($"Qwen3:Model:ExpertSlices: {slices} does not cut the experts' intermediate size " +
                                        $"(moe_intermediate_size {inner}) into equal slices.");
        }
        // Q8_0 quantises a row in blocks of 32: a slice's down projection narrower than that would stay at the stored width.
        if (WeightStorages.Parse(options.Quantize, "Qwen3:Model:Quantize") == WeightStorage.Int8
            && inner % WeightFormats.Q8Block == 0 && inner / slices % WeightFormats.Q8Block != 0)
        {
            throw new ArgumentException($"Qwen3:Model:ExpertSlices: {slices} slices of moe_intermediate_size {inner} are {inner / slices} " +
                                        $"columns wide, and int8 (Qwen3:Model:Quantize) quantises the down projection in blocks of " +
                                        $"{WeightFormats.Q8Block} columns: each slice's would stay unquantised. Take a count that leaves a multiple of {WeightFormats.Q8Block}.");
        }
        return ExpertRange.Split(config.NumExperts, options.ExpertGroups, options.ExpertSlices);
    }

    public SchedulerOptions Scheduler => new()
    {
        NumBlocks = Options.KvBlocks,
        BlockSize = Options.BlockSize,
        MaxBatchTokens = Options.MaxBatchTokens,
        MaxSequences = Options.MaxSequences,
        MaxModelLength = Options.MaxModelLength > 0 ? Options.MaxModelLength : Config.MaxPositionEmbeddings,
        RecoveryTimeout = TimeSpan.FromSeconds(Options.RecoverySeconds),
    };

    /// <summary>Every stage of every replica, and every expert group of every stage with sparse layers.</summary>
    public IEnumerable<ModelGrainKey> ShardKeys()
    {
        var stages = Stages;
        for (int r = 0; r < Math.Max(1, Options.Replicas); r++)
        {
            for (int s = 0; s < stages.Length; s++) yield return new StageKey(Name, r, s);
        }
        for (int s = 0; s < stages.Length; s++)
        {
            if (!stages[s].SparseLayers(Config).Any()) continue;
            for (int g = 0; g < ExpertGroups.Length; g++) yield return new ExpertGroupKey(Name, s, g);
        }
    }

    /// <summary>What a request to this model may ask for.</summary>
    public RequestLimits Limits => new(Config.VocabSize, Scheduler.ContextWindow);

    /// <summary>The sampling a request that sets nothing gets (generation_config.json's defaults).</summary>
    public SamplingParams DefaultSampling => SamplingParams.Defaults(Generation);

    public ModelDescription Describe() => new(Name, Config.Architecture, Scheduler.ContextWindow, Config.VocabSize,
        Options.Stages, ExpertGroups.Length);
}
