using System.Text;
using System.Text.Json;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>A piece of an assistant reply as the tool-call parser reads it: text for <c>content</c>, or one whole call.</summary>
public abstract record ToolCallEvent;

/// <summary>Reply text that is not part of a call.</summary>
public sealed record ContentEvent(string Text) : ToolCallEvent;

/// <summary>
/// A call the reply made: its position among the reply's calls, the function's name and its arguments as compact
/// JSON text (an object).
/// </summary>
public sealed record CallEvent(int Index, string Name, string Arguments) : ToolCallEvent;

/// <summary>
/// Reads Qwen3's tool calls out of an assistant reply as it streams: the Hermes format its chat template asks for,
/// <c>&lt;tool_call&gt;\n{"name": ..., "arguments": {...}}\n&lt;/tool_call&gt;</c>, any number of them, with text before
/// (kept as content). Text that might be the start of a <c>&lt;tool_call&gt;</c> tag is held back until it is known
/// not to be, so a partial tag never reaches the content; a call is released whole once its closing tag arrives.
/// A block whose JSON is not a call (malformed, no name, arguments not an object), or one the reply never closes,
/// is given back as content with a warning. A closing tag inside a JSON string of the call is text, not the end of the
/// call. Whitespace between and after calls is dropped.
/// </summary>
public sealed class ToolCallParser
{
    public const string Open = "<tool_call>";
    public const string Close = "</tool_call>";

    readonly StringBuilder _pending = new();
    readonly List<string> _warnings = [];
    bool _inCall;
    int _calls;

    /// <summary>Calls parsed so far.</summary>
    public int Calls => _calls;

    /// <summary>What was given back as content although it looked like a call, and why.</summary>
    public IReadOnlyList<string> Warnings => _warnings;

    /// <summary>Reads the next piece of the reply; returns what it completes.</summary>
    public IReadOnlyList<ToolCallEvent> Push(string text)
    {
        _pending.Append(text);
        var events = new List<ToolCallEvent>();
        while (true)
        {
            string pending = _pending.ToString();
            if (_inCall)
            {
                int close = CloseOutsideStrings(pending);
                if (close < 0) return events;
                events.Add(Block(pending[..close]));
                _pending.Remove(0, close + Close.Length);
                _inCall = false;
                continue;
            }
            int open = pending.IndexOf(Open, StringComparison.Ordinal);
            if (open >= 0)
            {
                AddContent(events, pending[..open]);
                _pending.Remove(0, open + Open.Length);
                _inCall = true;
                continue;
            }
            // No tag yet: release everything but a tail that could still grow into one.
            int hold = HeldBack(pending);
            AddContent(events, pending[..^hold]);
            _pending.Remove(0, pending.Length - hold);
            return events;
        }
    }

    /// <summary>The reply has ended: what is still held back, and a call left open, become content.</summary>
    public IReadOnlyList<ToolCallEvent> Finish()
    {
        var events = new List<ToolCallEvent>();
        string pending = _pending.ToString();
        _pending.Clear();
        if (_inCall)
        {
            _warnings.Add($"a {Open} block was never closed; returned as content");
            AddContent(events, Open + pending);
            _inCall = false;
        }
        else
        {
            AddContent(events, pending);
        }
        return events;
    }

    /// <summary>Parses a whole reply: its content (text outside calls) and its calls.</summary>
    public static (string Content, IReadOnlyList<CallEvent> Calls, IReadOnlyList<string> Warnings) Parse(string reply)
    {
        var parser = new ToolCallParser();
        var events = parser.Push(reply).Concat(parser.Finish()).ToList();
        return (string.Concat(events.OfType<ContentEvent>().Select(e => e.Text)), events.OfType<CallEvent>().ToList(), parser.Warnings);
    }

    void AddContent(List<ToolCallEvent> events, string text)
    {
        // After a call, the newlines the model writes between calls (and after the last) are not content.
        if (_calls > 0 && string.IsNullOrWhiteSpace(text)) return;
        if (text.Length > 0) events.Add(new ContentEvent(text));
    }

    ToolCallEvent Block(string body)
    {
        string? problem;
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            problem = root.ValueKind != JsonValueKind.Object ? "is not a JSON object"
                : !root.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0
                    ? "has no \"name\" string"
                : root.TryGetProperty("arguments", out var args) && args.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null)
                    ? "has \"arguments\" that are not an object"
                : null;
            if (problem is null)
            {
                string arguments = root.TryGetProperty("arguments", out var a) && a.ValueKind == JsonValueKind.Object
                    ? JsonSerializer.Serialize(a, Compact) : "{}";
                return new CallEvent(_calls++, root.GetProperty("name").GetString()!, arguments);
            }
        }
        catch (JsonException e)
        {
            problem = $"is not valid JSON ({e.Message})";
        }
        _warnings.Add($"a {Open} block {problem}; returned as content");
        return new ContentEvent(Open + body + Close);
    }

    static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Where the closing tag ends a call's body: its first occurrence outside a JSON string, so an argument whose text
    /// holds the tag (a string may hold anything) does not cut the call short. -1 while there is none yet.
    /// </summary>
    static int CloseOutsideStrings(string body)
    {
        bool inString = false;
        for (int i = 0; i < body.Length; i++)
        {
            char c = body[i];
            if (inString)
            {
                if (c == '\\') i++;
                else if (c == '"') inString = false;
            }
            else if (c == '"')
            {
                inString = true;
            }
            else if (c == '<' && string.CompareOrdinal(body, i, Close, 0, Close.Length) == 0)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>How many trailing characters of <paramref name="text"/> are a proper prefix of the opening tag.</summary>
    static int HeldBack(string text)
    {
        for (int n = Math.Min(text.Length, Open.Length - 1); n > 0; n--)
            if (string.CompareOrdinal(text, text.Length - n, Open, 0, n) == 0) return n;
        return 0;
    }
}
