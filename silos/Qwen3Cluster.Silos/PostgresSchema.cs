using Microsoft.Extensions.Logging;
using Npgsql;

namespace Qwen3Cluster.Silos;

/// <summary>
/// Orleans' PostgreSQL tables (membership and grain storage), created where they are missing from Orleans' own
/// scripts (embedded from <c>Sql/</c>). One transaction under an advisory lock: silos that start together create
/// them once, and a failure leaves nothing half made.
/// </summary>
public static partial class PostgresSchema
{
    /// <summary>Each script, and the table whose presence says it has run.</summary>
    static readonly (string Script, string Table)[] Parts =
    [
        ("PostgreSQL-Main.sql", "orleansquery"),
        ("PostgreSQL-Clustering.sql", "orleansmembershiptable"),
        ("PostgreSQL-Persistence.sql", "orleansstorage"),
    ];

    // Any constant both the silos agree on: the advisory lock that serialises schema creation.
    const long LockKey = 0x5157_454E_3343_4C55;

    /// <summary>Creates Orleans' main table and, as asked, the membership and storage tables; returns the scripts it ran.</summary>
    public static async Task<IReadOnlyList<string>> EnsureAsync(string connectionString, bool clustering, bool storage,
        ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        var wanted = Parts.Where((p, i) => i == 0 || (i == 1 && clustering) || (i == 2 && storage)).ToList();
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({LockKey})", connection, transaction))
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        var ran = new List<string>();
        foreach (var (script, table) in wanted)
        {
            await using var exists = new NpgsqlCommand("SELECT to_regclass(@name) IS NOT NULL", connection, transaction);
            exists.Parameters.AddWithValue("name", table);
            if ((bool)(await exists.ExecuteScalarAsync(cancellationToken))!) continue;
            await using var command = new NpgsqlCommand(Read(script), connection, transaction);
            try
            {
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (PostgresException e)
            {
                throw new InvalidOperationException($"Creating Orleans' PostgreSQL schema: {script} failed: {e.MessageText}", e);
            }
            ran.Add(script);
        }
        await transaction.CommitAsync(cancellationToken);
        if (ran.Count > 0 && logger is not null) LogCreated(logger, string.Join(", ", ran));
        return ran;
    }

    static string Read(string script)
    {
        using var stream = typeof(PostgresSchema).Assembly.GetManifestResourceStream($"Qwen3Cluster.Silos.Sql.{script}")
            ?? throw new InvalidOperationException($"The silo assembly does not embed {script}.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "PostgreSQL: created Orleans' schema ({Scripts})")]
    static partial void LogCreated(ILogger logger, string scripts);
}
