using Orleans.Concurrency;
using Orleans.Runtime;
using Qwen3Cluster.Grains.Hosting;

namespace Qwen3Cluster.Grains;

/// <summary>What a session keeps between turns, in grain storage so it outlives the activation.</summary>
[GenerateSerializer, Alias("qwen3.SessionState")]
public sealed class SessionState
{
    [Id(0)] public string Owner { get; set; } = "";
    [Id(1)] public string Model { get; set; } = "";
    [Id(2)] public int[] History { get; set; } = [];
    [Id(3)] public int Turns { get; set; }
    [Id(4)] public int TtlSeconds { get; set; }
    [Id(5)] public DateTimeOffset LastUsed { get; set; }
    [Id(6)] public int Replica { get; set; }
    [Id(7)] public bool Exists { get; set; }
}

/// <summary>
/// A conversation: its token history (every turn's prompt and reply, exactly as the model saw them), its owner and
/// time to live. Its KV cache is parked in its replica under <see cref="SessionCache.Key"/>; a turn resumes
/// from it, and when the cache was dropped the engine recomputes it from the history, which only costs time.
/// </summary>
[Reentrant]
public sealed class SessionGrain(
    [PersistentState("session", SessionStorage.Name)] IPersistentState<SessionState> state,
    ModelDeployment deployment) : Grain, ISessionGrain
{
    public const int DefaultTtlSeconds = 3600;
    int? _activeTurn;
    bool _deleteAfterTurn;
    IGrainTimer? _expiry;

    string Id => this.GetPrimaryKeyString();
    SessionState S => state.State;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (!S.Exists) return;
        if (Expired) await Expire();
        else ScheduleExpiry();
    }

    public async Task<SessionInfo> Create(string owner, string model, int ttlSeconds)
    {
        if (S.Exists) throw new InvalidOperationException($"Session {Id} exists already.");
        state.State = new SessionState
        {
            Exists = true,
            Owner = owner,
            Model = model,
            TtlSeconds = ttlSeconds > 0 ? ttlSeconds : DefaultTtlSeconds,
            LastUsed = DateTimeOffset.UtcNow,
            Replica = (int)(StableHash(Id) % (uint)Math.Max(1, deployment.Options.Replicas)),
        };
        await state.WriteStateAsync();
        ScheduleExpiry();
        return Info();
    }

    public async Task<SessionInfo?> Get(string owner)
    {
        if (Owns(owner) && Expired) await Expire();
        return Owns(owner) ? Info() : null;
    }

    public async Task<TurnTicket> BeginTurn(string owner)
    {
        if (Owns(owner) && Expired) await Expire();
        if (!Owns(owner)) return new TurnTicket(TurnStatus.NotFound, 0, [], "", "", 0);
        if (_activeTurn is not null) return new TurnTicket(TurnStatus.Busy, 0, [], S.Model, "", S.Replica);
        _activeTurn = S.Turns + 1;
        S.LastUsed = DateTimeOffset.UtcNow;
        await state.WriteStateAsync();
        return new TurnTicket(TurnStatus.Started, _activeTurn.Value, S.History, S.Model, SessionCache.Key(Id), S.Replica);
    }

    public async Task EndTurn(int turn, int[] history)
    {
        if (_activeTurn != turn) return;
        if (_deleteAfterTurn)
        {
            await Expire();
            return;
        }
        S.History = history;
        S.Turns = turn;
        S.LastUsed = DateTimeOffset.UtcNow;
        // The turn stays open until its state is written, so no next turn can write over it meanwhile.
        try
        {
            await state.WriteStateAsync();
        }
        finally
        {
            _activeTurn = null;
        }
    }

    public async Task AbandonTurn(int turn)
    {
        if (_activeTurn != turn) return;
        if (_deleteAfterTurn) await Expire();
        _activeTurn = null;
    }

    /// <summary>Deletes now, or, while a turn is streaming, as soon as it ends (so its cache is dropped once parked).</summary>
    public async Task<bool> Delete(string owner)
    {
        if (!Owns(owner)) return false;
        if (_activeTurn is not null) _deleteAfterTurn = true;
        else await Expire();
        return true;
    }

    /// <summary>FNV-1a of the id: the same on every silo (string.GetHashCode differs from process to process).</summary>
    static uint StableHash(string id)
    {
        uint hash = 2166136261;
        foreach (char c in id) hash = (hash ^ c) * 16777619;
        return hash;
    }

    bool Owns(string owner) => S.Exists && S.Owner == owner && !_deleteAfterTurn;

    bool Expired => _activeTurn is null && DateTimeOffset.UtcNow > S.LastUsed.AddSeconds(S.TtlSeconds);

    SessionInfo Info() => new(Id, S.Model, S.History.Length, S.Turns, S.TtlSeconds, S.LastUsed.AddSeconds(S.TtlSeconds));

    void ScheduleExpiry()
    {
        _expiry?.Dispose();
        var period = TimeSpan.FromSeconds(Math.Clamp(S.TtlSeconds / 4.0, 1, 60));
        _expiry = this.RegisterGrainTimer(async _ =>
        {
            if (S.Exists && Expired) await Expire();
        }, new GrainTimerCreationOptions(period, period) { Interleave = true });
    }

    async Task Expire()
    {
        _expiry?.Dispose();
        _expiry = null;
        await GrainFactory.GetReplica(new ReplicaKey(S.Model, S.Replica)).DropCache(SessionCache.Key(Id));
        await state.ClearStateAsync();
        state.State = new SessionState();
        _activeTurn = null;
        _deleteAfterTurn = false;
        DeactivateOnIdle();
    }
}

public static class SessionStorage
{
    public const string Name = "sessions";
    /// <summary>The longest time to live a session may ask for.</summary>
    public static readonly TimeSpan MaxTtl = TimeSpan.FromDays(7);
}
