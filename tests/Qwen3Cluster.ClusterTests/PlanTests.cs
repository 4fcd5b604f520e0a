using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Grains.Placement;

namespace Qwen3Cluster.ClusterTests;

/// <summary>The plan and the grain keys as plain data.</summary>
public sealed class PlanTests
{
    static SiloDescriptor Silo(string name, params string[] roles) => new(name, roles.ToHashSet(), "cpu");

    [Theory]
    [InlineData("qwen3/0/stage/2", "stage", "qwen3", 0, 2, -1)]
    [InlineData("qwen3/experts/1/3", "experts", "qwen3", -1, 1, 3)]
    [InlineData("qwen3/1", "gateway", "qwen3", 1, -1, -1)]
    [InlineData("Qwen/Qwen3-30B-A3B/0/stage/1", "stage", "Qwen/Qwen3-30B-A3B", 0, 1, -1)]
    [InlineData("Qwen/Qwen3-30B-A3B/experts/0/7", "experts", "Qwen/Qwen3-30B-A3B", -1, 0, 7)]
    [InlineData("Qwen/Qwen3-30B-A3B/0", "gateway", "Qwen/Qwen3-30B-A3B", 0, -1, -1)]
    [InlineData("foo/stage/0", "gateway", "foo/stage", 0, -1, -1)]
    public void KeysReadBackWhateverTheModelIsCalled(string key, string kind, string model, int replica, int stage, int group)
    {
        Assert.Equal((kind, model, replica, stage, group), GrainKeys.Parse(key));
        string again = kind switch
        {
            "stage" => GrainKeys.Stage(model, replica, stage),
            "experts" => GrainKeys.ExpertGroup(model, stage, group),
            _ => GrainKeys.Gateway(model, replica),
        };
        Assert.Equal(key, again);
    }

    [Fact]
    public void ThePlanSpreadsByRoleAndFollowsPinsWhileTheirSiloIsThere()
    {
        var plan = new ClusterPlan(new Dictionary<string, string> { ["m/experts/0/1"] = "silo-d" },
            new ModelOptions { Stages = 2, ExpertGroups = 3 });
        SiloDescriptor[] silos = [Silo("silo-c", "experts"), Silo("silo-a", "gateway", "stage"), Silo("silo-b", "stage", "experts")];
        Assert.Equal("silo-a", plan.SiloFor("m/0", silos));
        Assert.Equal("silo-a", plan.SiloFor("m/0/stage/0", silos));
        Assert.Equal("silo-b", plan.SiloFor("m/0/stage/1", silos));
        Assert.Equal(["silo-b", "silo-c", "silo-b"], Enumerable.Range(0, 3).Select(g => plan.SiloFor($"m/experts/0/{g}", silos)));

        SiloDescriptor[] withD = [.. silos, Silo("silo-d", "experts")];
        Assert.Equal("silo-d", plan.SiloFor("m/experts/0/1", withD));
        SiloDescriptor[] noExperts = [Silo("silo-a", "gateway", "stage")];
        Assert.Equal("silo-a", plan.SiloFor("m/experts/1/2", noExperts));
        Assert.Null(plan.SiloFor("m/0", [Silo("silo-x", "experts")]));
    }
}
