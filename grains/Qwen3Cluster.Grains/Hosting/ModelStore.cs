using Microsoft.Extensions.Options;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Model.Tokenization;
using TorchSharp;

namespace Qwen3Cluster.Grains.Hosting;

/// <summary>
/// This silo's view of the served model: its config, how it is cut into stages and expert groups, and where its
/// checkpoint and tokenizer are. Grains load their share of the weights from here.
/// </summary>
public sealed class ModelStore
{
    readonly Lazy<Qwen3Config> _config;
    readonly Lazy<GenerationConfig> _generation;
    readonly Lazy<Qwen3Tokenizer?> _tokenizer;

    public ModelStore(IOptions<ModelOptions> options, IOptions<SiloRoleOptions> silo)
    {
        Options = options.Value;
        Silo = silo.Value;
        _config = new(() => Qwen3Config.Load(Options.Path));
        _generation = new(() => GenerationConfig.Load(Options.Path, Config));
        _tokenizer = new(() => File.Exists(System.IO.Path.Combine(Options.Path, "tokenizer.json")) ? Qwen3Tokenizer.Load(Options.Path) : null);
        if (Silo.Threads > 0) torch.set_num_threads(Silo.Threads);
    }

    public ModelOptions Options { get; }
    public SiloRoleOptions Silo { get; }
    public string Name => Options.ResolvedName;
    public string Path => Options.Path;
    public Qwen3Config Config => _config.Value;
    public GenerationConfig Generation => _generation.Value;
    public Qwen3Tokenizer? Tokenizer => _tokenizer.Value;
    public torch.Device Device => new(Silo.Device);

    public StageRange[] Stages => StageRange.Split(Config.NumHiddenLayers, Options.Stages);

    public ExpertRange[] ExpertGroups =>
        Config.IsMoe && Config.NumExperts > 0 ? ExpertRange.Split(Config.NumExperts, Options.ExpertGroups) : [];

    public SchedulerOptions Scheduler => new()
    {
        NumBlocks = Options.KvBlocks,
        BlockSize = Options.BlockSize,
        MaxBatchTokens = Options.MaxBatchTokens,
        MaxSequences = Options.MaxSequences,
        MaxModelLength = Options.MaxModelLength > 0 ? Options.MaxModelLength : Config.MaxPositionEmbeddings,
    };

    public ModelDescription Describe() => new(Name, Config.Architecture, Scheduler.ContextWindow, Config.VocabSize,
        Options.Stages, ExpertGroups.Length);
}
