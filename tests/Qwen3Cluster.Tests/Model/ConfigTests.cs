using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.Tests.Model;

public sealed class ConfigTests
{
    static Qwen3Config Real(string name) => Qwen3Config.Load(Fixtures.File($"configs/{name}.json"));

    [Fact]
    public void ReadsEveryFieldOfTheRealDenseConfig()
    {
        var c = Real("Qwen3-0.6B");
        Assert.False(c.IsMoe);
        Assert.Equal((151936, 1024, 28, 16, 8, 128, 3072), (c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize));
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal("bfloat16", c.TorchDtype);
        Assert.Equal(1e6, c.RopeTheta);
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.Null(c.RopeScaling);
        Assert.Equal([151645], c.EosTokenIds);
        Assert.Equal(40960, c.MaxPositionEmbeddings);
        Assert.False(c.IsSparseLayer(0));
    }

    [Fact]
    public void ReadsEveryFieldOfTheRealMoeConfigs()
    {
        var c = Real("Qwen3-30B-A3B");
        Assert.True(c.IsMoe);
        Assert.Equal((128, 8, 768, 1), (c.NumExperts, c.NumExpertsPerTok, c.MoeIntermediateSize, c.DecoderSparseStep));
        Assert.True(c.NormTopkProb);
        Assert.False(c.TieWordEmbeddings);
        Assert.Empty(c.MlpOnlyLayers);
        Assert.All(Enumerable.Range(0, 48), l => Assert.True(c.IsSparseLayer(l)));
        var big = Real("Qwen3-235B-A22B");
        Assert.Equal((4096, 94, 64, 4, 1536), (big.HiddenSize, big.NumHiddenLayers, big.NumAttentionHeads, big.NumKeyValueHeads, big.MoeIntermediateSize));
    }

    [Fact]
    public void ReadsYarnRopeScaling()
    {
        var c = Real("Qwen3-30B-A3B-yarn");
        Assert.Equal(new RopeScaling("yarn", 4.0, 32768, null, null, null, null, null, true), c.RopeScaling);
        Assert.Equal(131072, c.MaxPositionEmbeddings);
    }

    [Fact]
    public void SparseLayersFollowDecoderSparseStepAndMlpOnlyLayers()
    {
        var c = ModelPresets.Moe(6, 8, 2, 1, 4, 4, 2, 8, 16) with { DecoderSparseStep = 2, MlpOnlyLayers = [3] };
        Assert.Equal([false, true, false, false, false, true], Enumerable.Range(0, 6).Select(c.IsSparseLayer));
    }

    [Fact]
    public void WrittenConfigReadsBackEqual()
    {
        var c = Real("Qwen3-30B-A3B-yarn");
        var again = Qwen3Config.Parse(c.ToJson());
        Assert.Equal(c.ToJson(), again.ToJson());
    }

    [Theory]
    [InlineData("\"architectures\": [\"Qwen3MoeForCausalLM\"]", "\"architectures\": [\"LlamaForCausalLM\"]", "'architectures'")]
    [InlineData("\"hidden_size\": 2048,", "", "'hidden_size'")]
    [InlineData("\"num_experts\": 128,", "", "'num_experts'")]
    [InlineData("\"num_experts_per_tok\": 8", "\"num_experts_per_tok\": 200", "'num_experts_per_tok'")]
    [InlineData("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5", "'num_key_value_heads'")]
    [InlineData("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "'hidden_act'")]
    [InlineData("\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": \"int8\"", "'torch_dtype'")]
    [InlineData("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"longrope\"}", "'rope_scaling.rope_type'")]
    [InlineData("\"vocab_size\": 151936", "\"vocab_size\": \"many\"", "'vocab_size'")]
    [InlineData("\"mlp_only_layers\": []", "\"mlp_only_layers\": [99]", "'mlp_only_layers'")]
    public void BadFieldIsAClearErrorNamingIt(string from, string to, string named)
    {
        string json = File.ReadAllText(Fixtures.File("configs/Qwen3-30B-A3B.json")).Replace(from, to);
        var error = Assert.Throws<ModelConfigException>(() => Qwen3Config.Parse(json, "config.json"));
        Assert.Contains(named, error.Message);
        Assert.StartsWith("config.json:", error.Message);
    }

    [Fact]
    public void MissingFileAndBadJsonNameTheFile()
    {
        string dir = TestCheckpoints.NewDirectory("config");
        Assert.Contains("config.json: not found", Assert.Throws<ModelConfigException>(() => Qwen3Config.Load(dir)).Message);
        File.WriteAllText(Path.Combine(dir, "config.json"), "{ not json");
        Assert.Contains("not valid JSON", Assert.Throws<ModelConfigException>(() => Qwen3Config.Load(dir)).Message);
    }
}
