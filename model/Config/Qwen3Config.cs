using System.Text.Json;

namespace Qwen3Cluster.Model.Config;

/// <summary>
/// config.json of a Qwen3 (<c>Qwen3ForCausalLM</c>) or Qwen3-MoE (<c>Qwen3MoeForCausalLM</c>) checkpoint,
/// with Hugging Face's defaults for the fields a file may leave out.
/// </summary>
public sealed record Qwen3Config
{
    public const string DenseArchitecture = "Qwen3ForCausalLM";
    public const string MoeArchitecture = "Qwen3MoeForCausalLM";

    public required string Architecture { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    /// <summary>The dense MLP width (every layer of Qwen3; the <c>mlp_only_layers</c> of Qwen3-MoE).</summary>
    public required int IntermediateSize { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 32768;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000.0;
    public RopeScaling? RopeScaling { get; init; }
    public bool AttentionBias { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public string TorchDtype { get; init; } = "float32";
    public string HiddenAct { get; init; } = "silu";
    public bool UseSlidingWindow { get; init; }
    public int? SlidingWindow { get; init; }
    public int MaxWindowLayers { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    public int NumExperts { get; init; }
    public int NumExpertsPerTok { get; init; }
    public int MoeIntermediateSize { get; init; }
    public int DecoderSparseStep { get; init; } = 1;
    public IReadOnlyList<int> MlpOnlyLayers { get; init; } = [];
    public bool NormTopkProb { get; init; }

    public bool IsMoe => Architecture == MoeArchitecture;

    /// <summary>transformers' rule: a layer is sparse unless listed in mlp_only_layers or off the sparse step.</summary>
    public bool IsSparseLayer(int layer) =>
        IsMoe && NumExperts > 0 && !MlpOnlyLayers.Contains(layer) && (layer + 1) % DecoderSparseStep == 0;

    /// <summary>The sliding window a layer uses, or null for full attention (transformers' Qwen3 layer_types).</summary>
    public int? SlidingWindowFor(int layer) =>
        UseSlidingWindow && SlidingWindow is > 0 && layer >= MaxWindowLayers ? SlidingWindow : null;

    public static Qwen3Config Load(string path)
    {
        var file = Directory.Exists(path) ? System.IO.Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new ModelConfigException($"{file}: not found.");
        string text = File.ReadAllText(file);
        try
        {
            return Parse(text, file);
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{file}: not valid JSON ({e.Message}).");
        }
    }

    public static Qwen3Config Parse(string json, string file = "config.json")
    {
        using var doc = JsonDocument.Parse(json);
        var fields = new ConfigFields(doc.RootElement, file);
        string architecture = fields.Architecture();
        bool moe = architecture == MoeArchitecture;
        int hidden = fields.RequiredInt("hidden_size");
        int heads = fields.RequiredInt("num_attention_heads");
        int numExperts = moe ? fields.RequiredInt("num_experts") : 0;
        var mlpOnly = fields.IntList("mlp_only_layers");
        int sparseStep = fields.Int("decoder_sparse_step") ?? 1;
        int layers = fields.RequiredInt("num_hidden_layers");
        bool anyDense = !moe || numExperts == 0 || Enumerable.Range(0, layers)
            .Any(l => mlpOnly.Contains(l) || (l + 1) % Math.Max(sparseStep, 1) != 0);
        var config = new Qwen3Config
        {
            Architecture = architecture,
            VocabSize = fields.RequiredInt("vocab_size"),
            HiddenSize = hidden,
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = fields.Int("num_key_value_heads") ?? heads,
            HeadDim = fields.Int("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            IntermediateSize = anyDense ? fields.RequiredInt("intermediate_size") : fields.Int("intermediate_size") ?? 0,
            MaxPositionEmbeddings = fields.Int("max_position_embeddings") ?? 32768,
            RmsNormEps = fields.Double("rms_norm_eps") ?? 1e-6,
            RopeTheta = fields.RopeTheta() ?? 10000.0,
            RopeScaling = fields.RopeScaling(),
            AttentionBias = fields.Bool("attention_bias") ?? false,
            TieWordEmbeddings = fields.Bool("tie_word_embeddings") ?? false,
            TorchDtype = fields.String("torch_dtype") ?? fields.String("dtype") ?? "float32",
            HiddenAct = fields.String("hidden_act") ?? "silu",
            UseSlidingWindow = fields.Bool("use_sliding_window") ?? false,
            SlidingWindow = fields.Int("sliding_window"),
            MaxWindowLayers = fields.Int("max_window_layers") ?? layers,
            BosTokenId = fields.Int("bos_token_id"),
            EosTokenIds = fields.IntList("eos_token_id"),
            NumExperts = numExperts,
            NumExpertsPerTok = moe ? fields.RequiredInt("num_experts_per_tok") : 0,
            MoeIntermediateSize = moe ? fields.RequiredInt("moe_intermediate_size") : 0,
            DecoderSparseStep = sparseStep,
            MlpOnlyLayers = mlpOnly,
            NormTopkProb = fields.Bool("norm_topk_prob") ?? false,
        };
        config.Validate(file);
        return config;
    }

    void Validate(string file)
    {
        void Positive(int value, string field)
        {
            if (value <= 0) throw new ModelConfigException($"{file}: '{field}' must be positive, got {value}.");
        }
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(HeadDim, "head_dim");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
        {
            throw new ModelConfigException(
                $"{file}: 'num_attention_heads' ({NumAttentionHeads}) must be a multiple of 'num_key_value_heads' ({NumKeyValueHeads}).");
        }

        if (HeadDim % 2 != 0)
            throw new ModelConfigException($"{file}: 'head_dim' must be even for rotary embeddings, got {HeadDim}.");
        if (HiddenAct != "silu")
            throw new ModelConfigException($"{file}: 'hidden_act' is '{HiddenAct}'; Qwen3 uses 'silu'.");
        if (TorchDtype is not ("float32" or "bfloat16" or "float16"))
            throw new ModelConfigException($"{file}: 'torch_dtype' is '{TorchDtype}'; expected float32, bfloat16 or float16.");
        if (RmsNormEps <= 0) throw new ModelConfigException($"{file}: 'rms_norm_eps' must be positive.");
        if (RopeTheta <= 0) throw new ModelConfigException($"{file}: 'rope_theta' must be positive.");
        if (!IsMoe) return;
        if (DecoderSparseStep <= 0)
            throw new ModelConfigException($"{file}: 'decoder_sparse_step' must be positive, got {DecoderSparseStep}.");
        if (NumExperts > 0)
        {
            Positive(MoeIntermediateSize, "moe_intermediate_size");
            if (NumExpertsPerTok <= 0 || NumExpertsPerTok > NumExperts)
            {
                throw new ModelConfigException(
                    $"{file}: 'num_experts_per_tok' ({NumExpertsPerTok}) must be between 1 and 'num_experts' ({NumExperts}).");
            }
        }
        foreach (int layer in MlpOnlyLayers)
        {
            if (layer < 0 || layer >= NumHiddenLayers)
                throw new ModelConfigException($"{file}: 'mlp_only_layers' lists layer {layer}, outside 0..{NumHiddenLayers - 1}.");
        }
    }

    /// <summary>Typed reads of config.json fields, each failure naming the file and the field.</summary>
    sealed class ConfigFields(JsonElement root, string file)
    {
        public string Architecture()
        {
            if (root.TryGetProperty("architectures", out var archs) && archs.ValueKind == JsonValueKind.Array)
            {
                var names = archs.EnumerateArray().Select(a => a.GetString()).ToList();
                var known = names.FirstOrDefault(n => n is DenseArchitecture or MoeArchitecture);
                return known ?? throw new ModelConfigException(
                    $"{file}: 'architectures' is [{string.Join(", ", names)}]; supported: {DenseArchitecture}, {MoeArchitecture}.");
            }
            return String("model_type") switch
            {
                "qwen3" => DenseArchitecture,
                "qwen3_moe" => MoeArchitecture,
                null => throw new ModelConfigException($"{file}: missing required field 'architectures' (or 'model_type')."),
                var other => throw new ModelConfigException(
                    $"{file}: 'model_type' is '{other}'; supported: qwen3, qwen3_moe."),
            };
        }

        public int RequiredInt(string name) =>
            Int(name) ?? throw new ModelConfigException($"{file}: missing required field '{name}'.");

        public int? Int(string name)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind == JsonValueKind.Array) return v.GetArrayLength() > 0 ? ElementInt(v[0], name) : null;
            return ElementInt(v, name);
        }

        public double? Double(string name)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.Number ? v.GetDouble()
                : throw new ModelConfigException($"{file}: '{name}' must be a number, got {v.ValueKind}.");
        }

        public bool? Bool(string name)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new ModelConfigException($"{file}: '{name}' must be true or false, got {v.ValueKind}."),
            };
        }

        public string? String(string name)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.String ? v.GetString()
                : throw new ModelConfigException($"{file}: '{name}' must be a string, got {v.ValueKind}.");
        }

        public IReadOnlyList<int> IntList(string name)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return [];
            if (v.ValueKind == JsonValueKind.Number) return [ElementInt(v, name)];
            if (v.ValueKind != JsonValueKind.Array)
                throw new ModelConfigException($"{file}: '{name}' must be a list of integers, got {v.ValueKind}.");
            return v.EnumerateArray().Select(e => ElementInt(e, name)).ToArray();
        }

        /// <summary>rope_theta sits at the top level, or inside rope_parameters in newer transformers.</summary>
        public double? RopeTheta()
        {
            if (Double("rope_theta") is { } theta) return theta;
            return root.TryGetProperty("rope_parameters", out var p) && p.ValueKind == JsonValueKind.Object
                && p.TryGetProperty("rope_theta", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetDouble() : null;
        }

        public RopeScaling? RopeScaling()
        {
            if (root.TryGetProperty("rope_scaling", out var s) && s.ValueKind != JsonValueKind.Null)
                return Config.RopeScaling.Parse(s, file, "rope_scaling");
            if (root.TryGetProperty("rope_parameters", out var p) && p.ValueKind == JsonValueKind.Object)
                return Config.RopeScaling.Parse(p, file, "rope_parameters");
            return null;
        }

        int ElementInt(JsonElement e, string name)
        {
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i)) return i;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue)
                return (int)d;
            throw new ModelConfigException($"{file}: '{name}' must be an integer, got {e.GetRawText()}.");
        }
    }
}
