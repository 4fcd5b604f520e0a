using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Sampling;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// The model this gateway serves, as both protocols see it: its name, tokenizer and chat template, the limits and
/// sampling defaults requests are resolved against, and the replica a prompt goes to. Refusals are
/// <see cref="RequestError"/>s, which each protocol maps at its edge.
/// </summary>
public sealed class ServedModel(ModelDeployment deployment, IGrainFactory grains)
{
    readonly Lazy<ChatTemplate?> _template = new(() => deployment.Tokenizer is { } t ? ChatTemplate.For(t) : null);

    public string Name => deployment.Name;
    public ModelDeployment Deployment => deployment;
    public RequestLimits Limits => deployment.Limits;
    public SamplingParams DefaultSampling => deployment.DefaultSampling;

    /// <summary>Checks a request's model field: empty means this model, anything else must be its name.</summary>
    public void Check(string requested)
    {
        if (requested.Length > 0 && requested != deployment.Name)
            throw RequestError.NotFound("model", $"'{requested}' is not served here; models: {deployment.Name}");
    }

    /// <summary>The checkpoint's tokenizer; <paramref name="field"/> names the text that needs one when it has none.</summary>
    public Qwen3Tokenizer Tokenizer(string field) => deployment.Tokenizer
        ?? throw RequestError.Invalid(field, $"model {deployment.Name} has no tokenizer.json: send token ids");

    /// <summary>The prompt ids of a conversation, for its next reply.</summary>
    public int[] Chat(IReadOnlyList<ChatMessage> messages, bool? enableThinking, string field = "messages", ToolChoice? tools = null)
    {
        var tokenizer = Tokenizer(field);
        tools ??= ToolChoice.NoTools;
        string prompt = Template(field).Render(messages, addGenerationPrompt: true, enableThinking, tools.Tools);
        return tokenizer.Encode(prompt + tools.ForcedPrefix);
    }

    /// <summary>A session's next turn: its history, then the new messages as the chat template continues it.</summary>
    public int[] ContinueChat(IReadOnlyList<int> history, IReadOnlyList<ChatMessage> messages, bool? enableThinking, string field = "messages",
        ToolChoice? tools = null)
    {
        Template(field);
        tools ??= ToolChoice.NoTools;
        return ChatPrompt.Continue(Tokenizer(field), history, messages, enableThinking, tools.Tools, tools.ForcedPrefix);
    }

    /// <summary>The chat template, or a refusal naming <paramref name="field"/> when the checkpoint's is not one rendered here.</summary>
    public ChatTemplate Template(string field)
    {
        Tokenizer(field);
        try
        {
            return _template.Value!;
        }
        catch (TokenizerFormatException e)
        {
            throw new RequestError(ErrorKind.FailedPrecondition, field, e.Message);
        }
    }

    public IReplicaGrain Replica(int replica = 0) => grains.GetReplica(new ReplicaKey(deployment.Name, replica));

    /// <summary>
    /// The replica for a prompt: chosen by its first tokens, so requests that share a beginning (a system prompt,
    /// a conversation resent in full) meet the prefix cache of the same replica.
    /// </summary>
    public IReplicaGrain ReplicaFor(IReadOnlyList<int> prompt)
    {
        int replicas = deployment.Options.Replicas;
        if (replicas <= 1) return Replica(0);
        uint hash = 2166136261;
        foreach (int token in prompt.Take(deployment.Options.BlockSize)) hash = (hash ^ (uint)token) * 16777619;
        return Replica((int)(hash % (uint)replicas));
    }
}
