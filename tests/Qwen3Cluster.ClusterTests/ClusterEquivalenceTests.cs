using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Tests.Support;

namespace Qwen3Cluster.ClusterTests;

/// <summary>
/// Three silos (silo-a: gateway + stage, silo-b: stage + experts, silo-c: experts) serving a checkpoint cut into
/// stages and expert groups give what the single-process engine gives, and every grain sits where the plan says.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterEquivalenceTests
{
    public static readonly (string, string)[] Silos = [("silo-a", "gateway,stage"), ("silo-b", "stage,experts"), ("silo-c", "experts")];

    static readonly int[][] Prompts =
    [
        [5, 17, 300, 42],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 100, 200, 300, 400, 12, 13, 14, 15, 16, 17],
        [250, 251],
    ];

    public static TheoryData<string, int, int, int> Splits => new()
    {
        { "moe", 1, 2, 1 },
        { "moe", 2, 4, 1 },
        { "moe", 3, 3, 1 },
        { "moe", 1, 2, 2 },
        { "dense", 2, 1, 1 },
        { "dense", 3, 1, 1 },
    };

    public static string Checkpoint(string kind) => kind == "moe"
        ? TestCheckpoints.Get("small-moe", TestCheckpoints.SmallMoe)
        : TestCheckpoints.Get("small-dense", TestCheckpoints.SmallDense);

    [Theory, MemberData(nameof(Splits))]
    public async Task ClusterOutputEqualsTheSingleProcessEngine(string kind, int stages, int ranges, int slices)
    {
        string dir = Checkpoint(kind);
        await using var cluster = await ModelCluster.StartAsync(dir, Silos, stages, ranges,
            settings: new() { ["Qwen3:Model:ExpertSlices"] = slices.ToString() });
        int groups = ranges * slices;
        var description = await cluster.Replica().Warmup();
        Assert.Equal(stages, description.Stages);

        for (int s = 0; s < stages; s++)
        {
            var stageKey = new StageKey(cluster.Model, 0, s);
            var stage = await cluster.Client.GetStage(stageKey).EnsureLoaded();
            Assert.Equal(s % 2 == 0 ? "silo-a" : "silo-b", stage.SiloName);
            if (kind != "moe") continue;
            for (int g = 0; g < groups; g++)
            {
                var group = await cluster.Client.GetExpertGroup(stageKey.ExpertGroup(g)).EnsureLoaded();
                Assert.Equal((s * groups + g) % 2 == 0 ? "silo-b" : "silo-c", group.SiloName);
            }
        }

        using var local = LocalModel.Load(dir, new LocalModelOptions { NumBlocks = 128, BlockSize = 4 });
        await using var engine = GenerationEngine.Start(local, new SchedulerOptions { NumBlocks = 128, BlockSize = 4, PrefixCaching = false }, []);
        foreach (var prompt in Prompts)
        {
            var expected = await EngineRunner.RunAsync(engine, EngineRunner.Greedy(prompt, 10, logprobs: 3));
            var actual = await cluster.GenerateAsync(prompt, new SamplingParams { Temperature = 0, MaxTokens = 10, Logprobs = 3, IgnoreEos = true });
            Assert.Equal(expected.Ids, actual.Ids);
            for (int i = 0; i < expected.Ids.Length; i++)
            {
                Assert.InRange(actual.Logprobs[i] - expected.Tokens[i].Logprob, -1e-4, 1e-4);
                Assert.Equal(expected.Tokens[i].Top.Select(t => t.Id), actual.Top[i]);
            }
        }
    }
}
