using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Layers;
using Qwen3Cluster.Tests.Support;
using static TorchSharp.torch;

namespace Qwen3Cluster.Tests.Model;

/// <summary>The real configs built on the meta device: every checkpoint name and shape, and a forward's shapes, for free.</summary>
public sealed class ShapeTests
{
    [Theory]
    [InlineData("Qwen3-0.6B", 310)]
    [InlineData("Qwen3-30B-A3B", 18867)]
    [InlineData("Qwen3-235B-A22B", 36945)]
    public void TheModelAsksForExactlyTheCheckpointsTensors(string name, int expectedTensors)
    {
        var config = Qwen3Config.Load(Fixtures.File($"configs/{name}.json"));
        var meta = new MetaWeights();
        var all = new StageRange(0, config.NumHiddenLayers, config.NumHiddenLayers);
        int count = LocalModel.CountTensors(config, [all], config.IsMoe ? [new ExpertRange(0, config.NumExperts)] : [], meta);
        Assert.Equal(expectedTensors, count);
        long d = config.HiddenSize;
        Assert.Equal([config.VocabSize, d], meta.Requested["model.embed_tokens.weight"]);
        Assert.Equal([config.NumAttentionHeads * config.HeadDim, d], meta.Requested["model.layers.0.self_attn.q_proj.weight"]);
        Assert.Equal([config.NumKeyValueHeads * config.HeadDim, d], meta.Requested["model.layers.0.self_attn.k_proj.weight"]);
        Assert.Equal([config.HeadDim], meta.Requested["model.layers.0.self_attn.q_norm.weight"]);
        Assert.Equal(!config.TieWordEmbeddings, meta.Requested.ContainsKey("lm_head.weight"));
        if (config.IsMoe)
        {
            Assert.Equal([config.NumExperts, d], meta.Requested["model.layers.0.mlp.gate.weight"]);
            Assert.Equal([config.MoeIntermediateSize, d], meta.Requested[$"model.layers.{config.NumHiddenLayers - 1}.mlp.experts.{config.NumExperts - 1}.gate_proj.weight"]);
            Assert.Equal([d, config.MoeIntermediateSize], meta.Requested["model.layers.0.mlp.experts.0.down_proj.weight"]);
        }
        else
        {
            Assert.Equal([config.IntermediateSize, d], meta.Requested["model.layers.0.mlp.gate_proj.weight"]);
        }
    }

    [Theory]
    [InlineData("Qwen3-0.6B")]
    [InlineData("Qwen3-30B-A3B")]
    public void StateDictKeysAreTheCheckpointNames(string name)
    {
        var config = Qwen3Config.Load(Fixtures.File($"configs/{name}.json"));
        var meta = new MetaWeights();
        using var stage = new ModelStage(config, new StageRange(0, 2, 2), meta);
        var keys = stage.state_dict().Keys.ToHashSet();
        foreach (var requested in meta.Requested.Keys) Assert.Contains(requested, keys);
    }

    [Fact]
    public void ALastStageHoldsTheHeadAndNotTheEmbedding()
    {
        var config = Qwen3Config.Load(Fixtures.File("configs/Qwen3-30B-A3B.json"));
        var meta = new MetaWeights();
        var range = new StageRange(46, 48, 48);
        using var stage = new ModelStage(config, range, meta);
        Assert.Equal(2, stage.Layers.Count);
        Assert.Equal(["model.layers.46", "model.layers.47"], stage.Layers.Select(l => l.GetName()));
        Assert.True(stage.state_dict().ContainsKey("lm_head.weight"));
        Assert.False(stage.state_dict().ContainsKey("model.embed_tokens.weight"));
    }
}
