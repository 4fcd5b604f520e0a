using System.Text;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// Turns a stream of token ids into text deltas. Works on bytes, so each step costs only the new token:
/// the bytes of a character that is still incomplete are held back until the token that completes it arrives.
/// The deltas, followed by <see cref="Flush"/>, concatenate to exactly <see cref="Qwen3Tokenizer.Decode"/> of all ids.
/// Not thread-safe; use one per sequence.
/// </summary>
public sealed class IncrementalDetokenizer
{
    readonly Qwen3Tokenizer _tokenizer;
    readonly bool _skipSpecialTokens;
    byte[] _buffer = new byte[64];
    int _held;

    public IncrementalDetokenizer(Qwen3Tokenizer tokenizer, bool skipSpecialTokens = false)
    {
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Bytes of an unfinished character waiting for the next token (at most 3).</summary>
    public int PendingByteCount => _held;

    /// <summary>Adds one token and returns the text it completes (possibly empty).</summary>
    public string Push(int tokenId)
    {
        if (_skipSpecialTokens && _tokenizer.IsSpecial(tokenId)) return string.Empty;

        ReadOnlySpan<byte> bytes = _tokenizer.GetTokenBytes(tokenId);
        int total = _held + bytes.Length;
        if (total > _buffer.Length) Array.Resize(ref _buffer, Math.Max(total, _buffer.Length * 2));

        bytes.CopyTo(_buffer.AsSpan(_held));
        int hold = IncompleteTailLength(_buffer.AsSpan(0, total));
        string delta = Encoding.UTF8.GetString(_buffer, 0, total - hold);
        _buffer.AsSpan(total - hold, hold).CopyTo(_buffer);
        _held = hold;
        return delta;
    }

    /// <summary>Ends the stream: held bytes of an unfinished character come out as U+FFFD.</summary>
    public string Flush()
    {
        string rest = Encoding.UTF8.GetString(_buffer, 0, _held);
        _held = 0;
        return rest;
    }

    /// <summary>
    /// Length of the trailing bytes that start a valid UTF-8 sequence which is not finished yet. Cutting there is
    /// safe: a lead byte always starts a new unit for the decoder, so the text before it decodes the same alone.
    /// Bytes that are already invalid are not held; the decoder replaces them the same way now or later.
    /// </summary>
    internal static int IncompleteTailLength(ReadOnlySpan<byte> bytes)
    {
        for (int back = 1; back <= Math.Min(3, bytes.Length); back++)
        {
            byte b = bytes[^back];
            if ((b & 0xC0) == 0x80) continue;

            int needed = b switch
            {
                >= 0xC2 and <= 0xDF => 2,
                >= 0xE0 and <= 0xEF => 3,
                >= 0xF0 and <= 0xF4 => 4,
                _ => 1,
            };
            bool validSoFar = back == 1 || IsValidSecondByte(b, bytes[^(back - 1)]);
            return needed > back && validSoFar ? back : 0;
        }

        return 0;
    }

    // The ranges of Unicode's well-formed UTF-8 table that exclude overlongs, surrogates and values past U+10FFFF.
    static bool IsValidSecondByte(byte lead, byte second) => lead switch
    {
        0xE0 => second is >= 0xA0 and <= 0xBF,
        0xED => second is >= 0x80 and <= 0x9F,
        0xF0 => second is >= 0x90 and <= 0xBF,
        0xF4 => second is >= 0x80 and <= 0x8F,
        _ => second is >= 0x80 and <= 0xBF,
    };
}
