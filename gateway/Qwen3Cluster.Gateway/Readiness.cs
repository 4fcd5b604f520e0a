using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Qwen3Cluster.Grains;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// Warms the model up once the silo runs (placing and loading every stage and expert group) and says when the
/// gateway can serve; retried until it succeeds, since other silos may still be joining.
/// </summary>
public sealed partial class Readiness(ServedModel model, ILogger<Readiness> logger) : BackgroundService
{
    readonly TaskCompletionSource<ModelDescription> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public bool IsReady => _ready.Task.IsCompletedSuccessfully;
    public Task<ModelDescription> WhenReady => _ready.Task;
    public string? LastError { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var tasks = Enumerable.Range(0, Math.Max(1, model.Store.Options.Replicas)).Select(r => model.Replica(r).Warmup());
                var descriptions = await Task.WhenAll(tasks);
                LogReady(descriptions[0].Name, descriptions[0].Stages, descriptions[0].ExpertGroups);
                _ready.TrySetResult(descriptions[0]);
                return;
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                LastError = e.Message;
                LogNotYet(e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving {Model}: {Stages} stage(s), {Groups} expert group(s)")]
    partial void LogReady(string model, int stages, int groups);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model not ready yet: {Reason}")]
    partial void LogNotYet(string reason);
}
