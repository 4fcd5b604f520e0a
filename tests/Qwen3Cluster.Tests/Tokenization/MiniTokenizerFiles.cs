using System.Text.Json.Nodes;

namespace Qwen3Cluster.Tests.Tokenization;

/// <summary>
/// A tiny byte-level BPE tokenizer in the Qwen3 file format (256 byte tokens, one merge, three added tokens),
/// cheap to write and mutate for tests of loading errors and added-token options.
/// </summary>
sealed class MiniTokenizerFiles : IDisposable
{
    public const string QwenSplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public const int HiId = 256;
    public const int EndId = 300;
    public const int StripId = 301;
    public const int AccentId = 302;

    public MiniTokenizerFiles(Action<JsonObject>? mutateTokenizer = null, Action<JsonObject>? mutateConfig = null)
    {
        Directory = Path.Combine(Path.GetTempPath(), "qwen3-mini-tokenizer-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
        JsonObject tokenizer = TokenizerJson();
        JsonObject config = new()
        {
            ["eos_token"] = "<|end|>",
            ["pad_token"] = null,
            ["chat_template"] = "{{ messages }}",
        };
        mutateTokenizer?.Invoke(tokenizer);
        mutateConfig?.Invoke(config);
        File.WriteAllText(Path.Combine(Directory, "tokenizer.json"), tokenizer.ToJsonString());
        File.WriteAllText(Path.Combine(Directory, "tokenizer_config.json"), config.ToJsonString());
    }

    public string Directory { get; }

    /// <summary>The id of the single-byte token for an ASCII character (ids follow byte values).</summary>
    public static int ByteId(char ascii) => ascii;

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

    static JsonObject TokenizerJson()
    {
        var vocab = new JsonObject();
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            vocab[((char)(printable ? b : 256 + shifted++)).ToString()] = b;
        }

        vocab["hi"] = HiId;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(
                AddedToken(EndId, "<|end|>", special: true),
                AddedToken(StripId, "<x>", special: false, lstrip: true, rstrip: true),
                AddedToken(AccentId, "\u1ec7", special: false, normalized: true)),
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = QwenSplitPattern },
                        ["behavior"] = "Isolated",
                        ["invert"] = false,
                    },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(new JsonArray("h", "i")),
            },
        };
    }

    static JsonObject AddedToken(int id, string content, bool special, bool lstrip = false, bool rstrip = false, bool normalized = false) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = false,
        ["lstrip"] = lstrip,
        ["rstrip"] = rstrip,
        ["normalized"] = normalized,
        ["special"] = special,
    };
}
