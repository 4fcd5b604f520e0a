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

    /// <summary>Token ids a client sent, refused with the first one outside the vocabulary.</summary>
    public int[] CheckIds(IEnumerable<int> ids, string field)
    {
        var array = ids.ToArray();
        int vocab = store.Config.VocabSize;
        for (int i = 0; i < array.Length; i++)
            if (array[i] < 0 || array[i] >= vocab)
                throw ApiErrors.Invalid($"{field}[{i}]", $"token {array[i]} is outside the vocabulary [0, {vocab})");
        return array;
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
