using System.Text;
using System.Text.Json;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// What tokenizer.json and tokenizer_config.json say, validated against the features this tokenizer implements
/// (byte-level BPE, Unicode normalizers, a Split regex pre-tokenizer, ByteLevel decoding).
/// </summary>
sealed class TokenizerDefinition
{
    public const string TokenizerFile = "tokenizer.json";
    public const string ConfigFile = "tokenizer_config.json";

    // Ids index dense arrays, so a stray huge id must be an error rather than a giant allocation.
    const int MaxTokenId = (1 << 24) - 1;

    public required Dictionary<string, int> Vocab { get; init; }
    public required List<string> Merges { get; init; }
    public required List<AddedToken> AddedTokens { get; init; }
    public required NormalizationForm? Normalization { get; init; }
    public required string SplitPattern { get; init; }
    public string? EosToken { get; init; }
    public string? PadToken { get; init; }
    public string? BosToken { get; init; }
    public string? ChatTemplate { get; init; }

    public static TokenizerDefinition Load(string modelDir)
    {
        using JsonDocument tokenizer = JsonFieldReader.Parse(Path.Combine(modelDir, TokenizerFile));
        using JsonDocument config = JsonFieldReader.Parse(Path.Combine(modelDir, ConfigFile));
        var t = new JsonFieldReader(TokenizerFile);
        var c = new JsonFieldReader(ConfigFile);
        JsonElement root = tokenizer.RootElement;
        t.Expect(root, "$", JsonValueKind.Object);
        c.Expect(config.RootElement, "$", JsonValueKind.Object);

        JsonElement model = t.Required(root, "model", "$", JsonValueKind.Object);
        CheckModel(t, model);
        CheckDecoder(t, root);
        return new TokenizerDefinition
        {
            Vocab = ReadVocab(t, model),
            Merges = ReadMerges(t, model),
            AddedTokens = ReadAddedTokens(t, root),
            Normalization = ReadNormalizer(t, t.Optional(root, "normalizer", "$"), "normalizer"),
            SplitPattern = ReadSplitPattern(t, t.Required(root, "pre_tokenizer", "$", JsonValueKind.Object)),
            EosToken = ReadTokenName(c, config.RootElement, "eos_token"),
            PadToken = ReadTokenName(c, config.RootElement, "pad_token"),
            BosToken = ReadTokenName(c, config.RootElement, "bos_token"),
            ChatTemplate = ReadChatTemplate(c, config.RootElement),
        };
    }

    static void CheckModel(JsonFieldReader t, JsonElement model)
    {
        string type = t.RequiredString(model, "type", "model");
        if (type != "BPE")
        {
            throw t.Error("model.type", $"is '{type}', but only byte-level 'BPE' is supported");
        }

        if (t.OptionalBool(model, "byte_fallback", "model", false))
        {
            throw t.Error("model.byte_fallback", "is true, which byte-level BPE never needs and this tokenizer does not implement");
        }

        if (t.OptionalBool(model, "ignore_merges", "model", false))
        {
            throw t.Error("model.ignore_merges", "is true, which this tokenizer does not implement");
        }

        if (t.Optional(model, "dropout", "model") is { } dropout
            && !(dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() == 0))
        {
            throw t.Error("model.dropout", "is set; BPE dropout is a training feature and is not supported");
        }

        foreach (string affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (!string.IsNullOrEmpty(t.OptionalString(model, affix, "model")))
            {
                throw t.Error($"model.{affix}", "is not empty, which byte-level BPE does not use");
            }
        }
    }

    static void CheckDecoder(JsonFieldReader t, JsonElement root)
    {
        JsonElement decoder = t.Required(root, "decoder", "$", JsonValueKind.Object);
        string type = t.RequiredString(decoder, "type", "decoder");
        if (type != "ByteLevel")
        {
            throw t.Error("decoder.type", $"is '{type}', but only 'ByteLevel' is supported");
        }
    }

    static Dictionary<string, int> ReadVocab(JsonFieldReader t, JsonElement model)
    {
        JsonElement vocab = t.Required(model, "vocab", "model", JsonValueKind.Object);
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id is < 0 or > MaxTokenId)
            {
                throw t.Error($"model.vocab[\"{entry.Name}\"]", $"must be an integer id from 0 to {MaxTokenId}");
            }

            if (!result.TryAdd(entry.Name, id))
            {
                throw t.Error($"model.vocab[\"{entry.Name}\"]", "appears twice");
            }
        }

        if (result.Count == 0) throw t.Error("model.vocab", "is empty");

        return result;
    }

    static List<string> ReadMerges(JsonFieldReader t, JsonElement model)
    {
        JsonElement merges = t.Required(model, "merges", "model", JsonValueKind.Array);
        var result = new List<string>(merges.GetArrayLength());
        int index = 0;
        foreach (JsonElement merge in merges.EnumerateArray())
        {
            string path = $"model.merges[{index++}]";
            (string left, string right) = merge.ValueKind switch
            {
                JsonValueKind.Array when merge.GetArrayLength() == 2
                    && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String
                    => (merge[0].GetString()!, merge[1].GetString()!),
                JsonValueKind.String when merge.GetString()!.Split(' ') is [string a, string b]
                    => (a, b),
                _ => throw t.Error(path, "must be a pair of tokens, as [\"a\", \"b\"] or \"a b\""),
            };

            // Microsoft.ML.Tokenizers takes merges as "a b" lines, so a token may not contain a space.
            if (left.Length == 0 || right.Length == 0 || left.Contains(' ') || right.Contains(' '))
            {
                throw t.Error(path, "holds an empty token or one with a space, which byte-level BPE never produces");
            }

            result.Add($"{left} {right}");
        }

        return result;
    }

    static List<AddedToken> ReadAddedTokens(JsonFieldReader t, JsonElement root)
    {
        var result = new List<AddedToken>();
        if (t.Optional(root, "added_tokens", "$") is not { } tokens) return result;

        t.Expect(tokens, "added_tokens", JsonValueKind.Array);
        int index = 0;
        foreach (JsonElement token in tokens.EnumerateArray())
        {
            string path = $"added_tokens[{index++}]";
            if (t.OptionalBool(token, "single_word", path, false))
            {
                throw t.Error($"{path}.single_word", "is true, which this tokenizer does not implement");
            }

            string content = t.RequiredString(token, "content", path);
            if (content.Length == 0)
            {
                throw t.Error($"{path}.content", "is empty");
            }

            int id = t.RequiredInt(token, "id", path);
            if (id > MaxTokenId)
            {
                throw t.Error($"{path}.id", $"must not exceed {MaxTokenId}");
            }

            result.Add(new AddedToken(
                id,
                content,
                t.OptionalBool(token, "special", path, false),
                t.OptionalBool(token, "normalized", path, false),
                t.OptionalBool(token, "lstrip", path, false),
                t.OptionalBool(token, "rstrip", path, false)));
        }

        return result;
    }

    static NormalizationForm? ReadNormalizer(JsonFieldReader t, JsonElement? normalizer, string path)
    {
        if (normalizer is not { } n) return null;

        string type = t.RequiredString(n, "type", path);
        if (type == "Sequence")
        {
            JsonElement inner = t.Required(n, "normalizers", path, JsonValueKind.Array);
            return inner.GetArrayLength() switch
            {
                0 => null,
                1 => ReadNormalizer(t, inner[0], $"{path}.normalizers[0]"),
                _ => throw t.Error($"{path}.normalizers", "chains several normalizers, which is not supported"),
            };
        }

        return type switch
        {
            "NFC" => NormalizationForm.FormC,
            "NFD" => NormalizationForm.FormD,
            "NFKC" => NormalizationForm.FormKC,
            "NFKD" => NormalizationForm.FormKD,
            _ => throw t.Error($"{path}.type", $"is '{type}'; only NFC, NFD, NFKC and NFKD are supported"),
        };
    }

    // Expected shape: Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)], as Qwen2/Qwen3 ship it.
    static string ReadSplitPattern(JsonFieldReader t, JsonElement preTokenizer)
    {
        const string path = "pre_tokenizer";
        if (t.RequiredString(preTokenizer, "type", path) != "Sequence")
        {
            throw t.Error($"{path}.type", "must be 'Sequence' of a regex 'Split' and a 'ByteLevel' step");
        }

        JsonElement steps = t.Required(preTokenizer, "pretokenizers", path, JsonValueKind.Array);
        if (steps.GetArrayLength() != 2)
        {
            throw t.Error($"{path}.pretokenizers", "must hold exactly a 'Split' step followed by a 'ByteLevel' step");
        }

        const string splitPath = path + ".pretokenizers[0]";
        JsonElement split = steps[0];
        if (t.RequiredString(split, "type", splitPath) != "Split")
        {
            throw t.Error($"{splitPath}.type", "must be 'Split'");
        }

        if (t.RequiredString(split, "behavior", splitPath) != "Isolated")
        {
            throw t.Error($"{splitPath}.behavior", "must be 'Isolated'");
        }

        if (t.OptionalBool(split, "invert", splitPath, false))
        {
            throw t.Error($"{splitPath}.invert", "must be false");
        }

        JsonElement pattern = t.Required(split, "pattern", splitPath, JsonValueKind.Object);
        string regex = t.OptionalString(pattern, "Regex", $"{splitPath}.pattern")
            ?? throw t.Error($"{splitPath}.pattern.Regex", "is missing (a plain 'String' pattern is not supported)");
        try
        {
            _ = new System.Text.RegularExpressions.Regex(regex, System.Text.RegularExpressions.RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw new TokenizerFormatException(TokenizerFile, $"{splitPath}.pattern.Regex", $"is not a valid .NET regex: {e.Message}", e);
        }

        const string bytePath = path + ".pretokenizers[1]";
        JsonElement byteLevel = steps[1];
        if (t.RequiredString(byteLevel, "type", bytePath) != "ByteLevel")
        {
            throw t.Error($"{bytePath}.type", "must be 'ByteLevel'");
        }

        if (t.OptionalBool(byteLevel, "use_regex", bytePath, true))
        {
            throw t.Error($"{bytePath}.use_regex", "must be false: the Split step already splits the text");
        }

        if (t.OptionalBool(byteLevel, "add_prefix_space", bytePath, false))
        {
            throw t.Error($"{bytePath}.add_prefix_space", "must be false");
        }

        return regex;
    }

    // Special tokens in tokenizer_config.json are either a string or a serialized AddedToken object.
    static string? ReadTokenName(JsonFieldReader c, JsonElement config, string name)
    {
        if (c.Optional(config, name, "$") is not { } value) return null;

        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object => c.RequiredString(value, "content", name),
            _ => throw c.Error(name, "must be a string, an object with 'content', or null"),
        };
    }

    static string? ReadChatTemplate(JsonFieldReader c, JsonElement config)
    {
        if (c.Optional(config, "chat_template", "$") is not { } template) return null;

        if (template.ValueKind == JsonValueKind.String) return template.GetString();

        // Some configs ship a list of named templates; the unnamed default is called "default".
        c.Expect(template, "chat_template", JsonValueKind.Array);
        foreach (JsonElement entry in template.EnumerateArray())
        {
            if (entry.ValueKind == JsonValueKind.Object
                && entry.TryGetProperty("name", out JsonElement n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default"
                && entry.TryGetProperty("template", out JsonElement body) && body.ValueKind == JsonValueKind.String)
            {
                return body.GetString();
            }
        }

        throw c.Error("chat_template", "is a list without a template named 'default'");
    }
}
