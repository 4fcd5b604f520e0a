using Qwen3Cluster.Grains.Placement;

namespace Qwen3Cluster.ClusterTests;

/// <summary>When a hot expert group gets copies and loses them, as plain data.</summary>
public sealed class HotGroupPolicyTests
{
    static readonly HotExpertOptions Options = new() { HotRatio = 2, ColdRatio = 1.25, HotWindows = 2, MinAssignments = 100, MaxCopies = 2 };

    [Fact]
    public void AGroupGetsACopyOnlyAfterStayingHotAndLosesItWhenItCools()
    {
        var policy = new HotGroupPolicy(Options, 4);
        Assert.Equal([0, 0, 0, 0], policy.Observe([500, 100, 100, 100]));   // hot (2.5x the mean) for one window
        Assert.Equal([1, 0, 0, 0], policy.Observe([500, 100, 100, 100]));   // and a second: one copy
        Assert.Equal([1, 0, 0, 0], policy.Observe([250, 100, 100, 100]));   // 1.8x: between the thresholds, kept
        Assert.Equal([0, 0, 0, 0], policy.Observe([100, 100, 110, 100]));   // even: dropped
        Assert.Equal([0, 0, 0, 0], policy.Observe([500, 100, 100, 100]));
        Assert.Equal([0, 0, 0, 0], policy.Observe([100, 100, 100, 500]));   // the streak is per group
    }

    [Fact]
    public void AVeryHotGroupGetsMoreCopiesUpToTheLimitAndSilenceDropsThemAll()
    {
        var policy = new HotGroupPolicy(Options, 8);
        long[] skewed = [800, 0, 0, 0, 0, 0, 0, 200];                        // group 0: 6.4x the mean
        policy.Observe(skewed);
        Assert.Equal([2, 0, 0, 0, 0, 0, 0, 0], policy.Observe(skewed));     // 6.4 / 2 = 3 copies, capped at 2
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 0], policy.Observe([50, 0, 0, 0, 0, 0, 0, 0]));  // too few to judge
    }

    [Fact]
    public void NoCopiesWhenTurnedOffOrWithOneGroup()
    {
        var off = new HotGroupPolicy(new HotExpertOptions { MaxCopies = 0, HotWindows = 1, MinAssignments = 1 }, 2);
        Assert.Equal([0, 0], off.Observe([1000, 1]));
        var one = new HotGroupPolicy(new HotExpertOptions { HotWindows = 1, MinAssignments = 1 }, 1);
        Assert.Equal([0], one.Observe([1000]));
    }

    [Fact]
    public void BadOptionsAreRefusedByName()
    {
        Assert.Contains("HotRatio", Assert.Throws<ArgumentOutOfRangeException>(() => new HotExpertOptions { HotRatio = 1 }.Validate()).Message);
        Assert.Contains("ColdRatio", Assert.Throws<ArgumentOutOfRangeException>(() => new HotExpertOptions { ColdRatio = 3 }.Validate()).Message);
        Assert.Contains("MaxCopies", Assert.Throws<ArgumentOutOfRangeException>(() => new HotExpertOptions { MaxCopies = -1 }.Validate()).Message);
    }
}
