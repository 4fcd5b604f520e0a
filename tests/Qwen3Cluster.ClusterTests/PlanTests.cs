using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;

namespace Qwen3Cluster.ClusterTests;

/// <summary>The plan and the grain keys as plain data.</summary>
public sealed class PlanTests
{
    static SiloDescriptor Silo(string name, params string[] roles) => new(name, roles.ToHashSet(), "cpu");

    public static TheoryData<string, ModelGrainKey> Keys => new()
    {
        { "qwen3/0/stage/2", new StageKey("qwen3", 0, 2) },
        { "qwen3/experts/1/3", new ExpertGroupKey("qwen3", 1, 3) },
        { "qwen3/1", new ReplicaKey("qwen3", 1) },
        { "Qwen/Qwen3-30B-A3B/0/stage/1", new StageKey("Qwen/Qwen3-30B-A3B", 0, 1) },
        { "Qwen/Qwen3-30B-A3B/experts/0/7", new ExpertGroupKey("Qwen/Qwen3-30B-A3B", 0, 7) },
        { "Qwen/Qwen3-30B-A3B/0", new ReplicaKey("Qwen/Qwen3-30B-A3B", 0) },
        { "foo/stage/0", new ReplicaKey("foo/stage", 0) },
        { "qwen3/experts/1/3/copy/2", new ExpertGroupKey("qwen3", 1, 3, 2) },
        { "Qwen/Qwen3-30B-A3B/experts/0/7/copy/1", new ExpertGroupKey("Qwen/Qwen3-30B-A3B", 0, 7, 1) },
    };

    [Theory, MemberData(nameof(Keys))]
    public void KeysReadBackWhateverTheModelIsCalled(string text, ModelGrainKey key)
    {
        Assert.Equal(key, ModelGrainKey.Parse(text));
        Assert.Equal(text, key.ToString());
    }

    [Fact]
    public void AKeyOfTheWrongKindIsRefusedByName()
    {
        Assert.Throws<FormatException>(() => ModelGrainKey.Parse("no-replica-number"));
        var wrong = Assert.Throws<FormatException>(() => ModelGrainKey.Parse<StageKey>("m/experts/0/1"));
        Assert.Contains("Stage", wrong.Message);
    }

    [Fact]
    public void ThePlanSpreadsByRoleAndFollowsPinsWhileTheirSiloIsThere()
    {
        var plan = new ClusterPlan(new Dictionary<string, string> { ["m/experts/0/1"] = "silo-d" },
            new ModelOptions { Stages = 2, ExpertGroups = 3 });
        SiloDescriptor[] silos = [Silo("silo-c", "experts"), Silo("silo-a", "gateway", "stage"), Silo("silo-b", "stage", "experts")];
        Assert.Equal("silo-a", plan.SiloFor(new ReplicaKey("m", 0), silos));
        Assert.Equal("silo-a", plan.SiloFor(new StageKey("m", 0, 0), silos));
        Assert.Equal("silo-b", plan.SiloFor(new StageKey("m", 0, 1), silos));
        Assert.Equal(["silo-b", "silo-c", "silo-b"], Enumerable.Range(0, 3).Select(g => plan.SiloFor(new ExpertGroupKey("m", 0, g), silos)));

        SiloDescriptor[] withD = [.. silos, Silo("silo-d", "experts")];
        Assert.Equal("silo-d", plan.SiloFor(new ExpertGroupKey("m", 0, 1), withD));
        SiloDescriptor[] noExperts = [Silo("silo-a", "gateway", "stage")];
        Assert.Equal("silo-a", plan.SiloFor(new ExpertGroupKey("m", 1, 2), noExperts));
        Assert.Null(plan.SiloFor(new ReplicaKey("m", 0), [Silo("silo-x", "experts")]));
    }

    [Fact]
    public void SlicedGroupsGiveEachExpertsSiloOneSliceOfEveryRange()
    {
        var options = new ModelOptions { Stages = 1, ExpertGroups = 2, ExpertSlices = 2 };
        var config = Qwen3Cluster.Model.Config.ModelPresets.Moe(layers: 2, hidden: 32, heads: 2, kvHeads: 1, headDim: 16,
            experts: 8, topK: 2, moeIntermediate: 24, intermediate: 32, vocab: 64);
        var ranges = ModelDeployment.SplitExperts(config, options);
        Assert.Equal(["[0, 4) slice 1/2", "[0, 4) slice 2/2", "[4, 8) slice 1/2", "[4, 8) slice 2/2"], ranges.Select(r => r.ToString()));

        var plan = new ClusterPlan(new Dictionary<string, string>(), options);
        SiloDescriptor[] silos = [Silo("silo-a", "gateway", "stage"), Silo("silo-b", "experts"), Silo("silo-c", "experts")];
        var placed = Enumerable.Range(0, ranges.Length).Select(g => plan.SiloFor(new ExpertGroupKey("m", 0, g), silos)).ToList();
        Assert.Equal(["silo-b", "silo-c", "silo-b", "silo-c"], placed);
        // A silo that joins takes one of the four grains, as with four whole groups.
        SiloDescriptor[] withD = [.. silos, Silo("silo-d", "experts")];
        Assert.Contains("silo-d", Enumerable.Range(0, ranges.Length).Select(g => plan.SiloFor(new ExpertGroupKey("m", 0, g), withD)));

        var uneven = Assert.Throws<ArgumentException>(() => ModelDeployment.SplitExperts(config, options with { ExpertSlices = 5 }));
        Assert.Contains("Qwen3:Model:ExpertSlices", uneven.Message);
        Assert.Contains("moe_intermediate_size 24", uneven.Message);
        Assert.Contains("Qwen3:Model:ExpertGroups", Assert.Throws<ArgumentException>(() =>
            ModelDeployment.SplitExperts(config, options with { ExpertGroups = 9 })).Message);
    }

    [Fact]
    public void AHotGroupsCopiesGoToOtherSilosAndOnlyAsManyAsThereAre()
    {
        var plan = new ClusterPlan(new Dictionary<string, string>(), new ModelOptions { Stages = 1, ExpertGroups = 4 });
        SiloDescriptor[] silos = [Silo("silo-a", "gateway", "stage"), Silo("silo-b", "experts"), Silo("silo-c", "experts"), Silo("silo-d", "experts")];
        for (int g = 0; g < 4; g++)
        {
            var key = new ExpertGroupKey("m", 0, g);
            string primary = plan.SiloFor(key, silos)!;
            string first = plan.SiloFor(key.WithCopy(1), silos)!, second = plan.SiloFor(key.WithCopy(2), silos)!;
            Assert.Equal(3, new[] { primary, first, second }.Distinct().Count());
            Assert.All(new[] { first, second }, s => Assert.Contains(s, new[] { "silo-b", "silo-c", "silo-d" }));
            Assert.Null(plan.SiloFor(key.WithCopy(3), silos));
            Assert.Equal(key, key.WithCopy(2).Primary);
        }
        // One experts silo: nowhere for a copy to go.
        Assert.Null(plan.SiloFor(new ExpertGroupKey("m", 0, 1, 1), [Silo("silo-a", "gateway", "stage"), Silo("silo-b", "experts")]));
    }
}
