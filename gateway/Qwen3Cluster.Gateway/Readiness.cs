using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Qwen3Cluster.Grains;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// Warms the model up once the silo runs (placing and loading every stage and expert group) and says when the
/// gateway can serve; retried until it succeeds, since other silos may still be joining.
/// </summary>
public sealed partial class Readiness(ServedModel model, ILogger<Readiness> logger) : BackgroundService
{
    volatile bool _ready;

    public bool IsReady => _ready;
    public string? LastError { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var tasks = Enumerable.Range(0, Math.Max(1, model.Deployment.Options.Replicas)).Select(r => model.Replica(r).Warmup());
                var descriptions = await Task.WhenAll(tasks);
                LogReady(descriptions[0].Name, descriptions[0].Stages, descriptions[0].ExpertGroups);
                DescribeChatTemplate();
                _ready = true;
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

    /// <summary>Says once, at start-up, when chat prompts are not rendered with the checkpoint's own template.</summary>
    void DescribeChatTemplate()
    {
        if (model.Deployment.Tokenizer is not { } tokenizer) return;
        try
        {
            var template = ChatTemplate.For(tokenizer);
            if (!template.IsExact) LogTemplateFallback(template.Description);
        }
        catch (TokenizerFormatException e)
        {
            LogNoChat(e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving {Model}: {Stages} stage(s), {Groups} expert group(s)")]
    partial void LogReady(string model, int stages, int groups);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model not ready yet: {Reason}")]
    partial void LogNotYet(string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Chat prompts are rendered with {Template}")]
    partial void LogTemplateFallback(string template);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Chat requests will be refused: {Reason}")]
    partial void LogNoChat(string reason);
}
