namespace Qwen3Cluster.Grains.Placement;

/// <summary>
/// When an expert group gets copies (<c>Qwen3:HotExperts</c>). Each stage reads, every window, which share of its
/// routed (token, expert) assignments each of its groups got; a group whose share stays at least
/// <see cref="HotRatio"/> times the mean share (1 / groups) for <see cref="HotWindows"/> windows in a row is hot, and
/// gets copies on other eligible silos that split its tokens. A group whose share falls under
/// <see cref="ColdRatio"/> times the mean, or a window with fewer than <see cref="MinAssignments"/> assignments in all,
/// drops them; a copy no stage calls for <see cref="IdleSeconds"/> unloads.
/// </summary>
public sealed class HotExpertOptions
{
    public const string Section = "Qwen3:HotExperts";

    /// <summary>Copies a hot group may get, at most (never more than there are other eligible silos); 0 turns copies off.</summary>
    public int MaxCopies { get; set; } = 1;

    /// <summary>A group's share over the mean share at which it is hot; every further multiple of it earns one more copy.</summary>
    public double HotRatio { get; set; } = 2.0;

    /// <summary>A group's share over the mean share under which its copies are dropped.</summary>
    public double ColdRatio { get; set; } = 1.25;

    /// <summary>The length of one window of routed-token counts.</summary>
    public double WindowSeconds { get; set; } = 10;

    /// <summary>How many windows in a row a group must be hot before it gets a copy.</summary>
    public int HotWindows { get; set; } = 2;

    /// <summary>A window with fewer assignments than this says nothing about skew: every copy is dropped.</summary>
    public long MinAssignments { get; set; } = 1024;

    /// <summary>A copy that has not been called for this long unloads its weights and deactivates.</summary>
    public double IdleSeconds { get; set; } = 30;

    public void Validate()
    {
        if (MaxCopies < 0) throw new ArgumentOutOfRangeException(nameof(MaxCopies), MaxCopies, $"{Section}:MaxCopies must be 0 or more.");
        if (!(HotRatio > 1)) throw new ArgumentOutOfRangeException(nameof(HotRatio), HotRatio, $"{Section}:HotRatio must be above 1.");
        if (!(ColdRatio > 0 && ColdRatio <= HotRatio))
            throw new ArgumentOutOfRangeException(nameof(ColdRatio), ColdRatio, $"{Section}:ColdRatio must be above 0 and at most HotRatio.");
        if (!(WindowSeconds > 0)) throw new ArgumentOutOfRangeException(nameof(WindowSeconds), WindowSeconds, $"{Section}:WindowSeconds must be above 0.");
        if (HotWindows < 1) throw new ArgumentOutOfRangeException(nameof(HotWindows), HotWindows, $"{Section}:HotWindows must be 1 or more.");
        if (!(IdleSeconds > 0)) throw new ArgumentOutOfRangeException(nameof(IdleSeconds), IdleSeconds, $"{Section}:IdleSeconds must be above 0.");
    }
}

/// <summary>
/// The decision part of hot-expert copies, as plain data: fed one window's routed assignments per group at a time,
/// it says how many copies each group should have. The hysteresis between <see cref="HotExpertOptions.ColdRatio"/>
/// and <see cref="HotExpertOptions.HotRatio"/> keeps a group near the threshold from gaining and losing copies.
/// </summary>
public sealed class HotGroupPolicy(HotExpertOptions options, int groups)
{
    readonly int[] _hotWindows = new int[groups];
    readonly int[] _wanted = new int[groups];

    /// <summary>The copies each group should have now.</summary>
    public IReadOnlyList<int> Wanted => _wanted;

    /// <summary>Reads one window's (token, expert) assignments per group; returns <see cref="Wanted"/>.</summary>
    public IReadOnlyList<int> Observe(IReadOnlyList<long> routed)
    {
        if (routed.Count != groups) throw new ArgumentException($"{routed.Count} counts for {groups} groups.", nameof(routed));
        long total = routed.Sum();
        for (int g = 0; g < groups; g++)
        {
            if (groups < 2 || options.MaxCopies == 0 || total < options.MinAssignments)
            {
                _hotWindows[g] = 0;
                _wanted[g] = 0;
                continue;
            }
            double ratio = (double)routed[g] * groups / total;
            if (ratio >= options.HotRatio)
            {
                if (++_hotWindows[g] >= options.HotWindows)
                    _wanted[g] = Math.Max(_wanted[g], Math.Clamp((int)(ratio / options.HotRatio), 1, options.MaxCopies));
            }
            else
            {
                _hotWindows[g] = 0;
                if (ratio < options.ColdRatio) _wanted[g] = 0;
            }
        }
        return _wanted;
    }
}
