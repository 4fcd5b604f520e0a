using Qwen3Cluster.Grains;
using Qwen3Cluster.Grains.Hosting;
using Qwen3Cluster.Model.Tokenization;

namespace Qwen3Cluster.Gateway;

/// <summary>The model this gateway serves, as requests name it, with its tokenizer and defaults.</summary>
public sealed class ServedModel(ModelStore store, IGrainFactory grains)
{
    public string Name => store.Name;
    public ModelStore Store => store;

    /// <summary>Checks a request's model field: empty means this model, anything else must be its name.</summary>
    public void Check(string requested)
    {
        if (requested.Length > 0 && requested != store.Name)
            throw ApiErrors.NotFound("model", $"'{requested}' is not served here; models: {store.Name}");
    }

    public Qwen3Tokenizer Tokenizer => store.Tokenizer
        ?? throw ApiErrors.Invalid("text", $"model {store.Name} has no tokenizer.json: send token_ids");

    /// <summary>The index of the first token id outside the vocabulary, or -1.</summary>
    public int FirstUnknownId(IReadOnlyList<int> ids)
    {
        for (int i = 0; i < ids.Count; i++)
            if (ids[i] < 0 || ids[i] >= store.Config.VocabSize) return i;
        return -1;
    }

    public string VocabularyRange => $"[0, {store.Config.VocabSize})";

    /// <summary>Token ids a client sent, refused (gRPC) with the first one outside the vocabulary.</summary>
    public int[] CheckIds(IEnumerable<int> ids, string field)
    {
        var array = ids.ToArray();
        int i = FirstUnknownId(array);
        return i < 0 ? array : throw ApiErrors.Invalid($"{field}[{i}]", $"token {array[i]} is outside the vocabulary {VocabularyRange}");
    }

    /// <summary>What is wrong with sampling settings for this model (the field and why), or null.</summary>
    public (string Field, string Message)? SamplingProblem(SamplingWire wire)
    {
        if (wire.ToParams().Validate(store.Config.VocabSize) is { } problem) return problem;
        int context = store.Scheduler.ContextWindow;
        return wire.MaxTokens > context ? ("max_tokens", $"{wire.MaxTokens} exceeds the context window of {context} tokens") : null;
    }

    public IGatewayGrain Replica(int replica = 0) => grains.GetGrain<IGatewayGrain>(GrainKeys.Gateway(store.Name, replica));

    /// <summary>
    /// The replica for a prompt: chosen by its first tokens, so requests that share a beginning (a system prompt,
    /// a conversation resent in full) meet the prefix cache of the same replica.
    /// </summary>
    public IGatewayGrain ReplicaFor(IReadOnlyList<int> prompt)
    {
        int replicas = store.Options.Replicas;
        if (replicas <= 1) return Replica(0);
        uint hash = 2166136261;
        foreach (int token in prompt.Take(store.Options.BlockSize)) hash = (hash ^ (uint)token) * 16777619;
        return Replica((int)(hash % (uint)replicas));
    }
}
