using System.Globalization;
using System.Text.Json;

namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// The pieces of JSON text, written the way <c>json.dumps</c> writes them (and so Qwen3's chat template): items
/// separated by <c>", "</c>, keys by <c>": "</c>, no other whitespace. Numbers are bounded in length (16 digits, 3
/// of exponent), so a value always fits a double; strings are valid UTF-8 with JSON's escapes (never a lone surrogate).
/// </summary>
public static class JsonGrammar
{
    public static readonly Grammar ItemSeparator = Grammar.Text(", ");
    public static readonly Grammar KeySeparator = Grammar.Text(": ");
    static readonly Grammar Quote = Grammar.Text("\"");

    public static Grammar Null => Grammar.Text("null");

    public static Grammar Boolean => Grammar.Alt(Grammar.Text("true"), Grammar.Text("false"));

    static Grammar Digit => Grammar.Byte((byte)'0', (byte)'9');

    static Grammar Digits(int min, int max) => Grammar.Repeat(Digit, min, max);

    /// <summary>0, or a digit 1-9 and up to 15 more.</summary>
    static Grammar Natural => Grammar.Alt(Grammar.Text("0"), Grammar.Seq(Grammar.Byte((byte)'1', (byte)'9'), Digits(0, 15)));

    public static Grammar Integer => Grammar.Seq(Grammar.Optional(Grammar.Text("-")), Natural);

    public static Grammar Number(bool negative = true) => Grammar.Seq(
        negative ? Grammar.Optional(Grammar.Text("-")) : Grammar.Empty,
        Natural,
        Grammar.Optional(Grammar.Seq(Grammar.Text("."), Digits(1, 16))),
        Grammar.Optional(Grammar.Seq(Grammar.Alt(Grammar.Text("e"), Grammar.Text("E")), Grammar.Optional(Grammar.Alt(Grammar.Text("+"), Grammar.Text("-"))), Digits(1, 3))));

    /// <summary>One character of a string's content: any but <c>"</c>, <c>\</c> and controls, or an escape.</summary>
    public static Grammar Character
    {
        get
        {
            var plain = CodePointSet.Of((0x20, CodePointSet.MaxCodePoint)).Minus(CodePointSet.Of(('"', '"'), ('\\', '\\'))).ToGrammar();
            var hex = Grammar.Alt(Grammar.Byte((byte)'0', (byte)'9'), Grammar.Byte((byte)'a', (byte)'f'), Grammar.Byte((byte)'A', (byte)'F'));
            // \uXXXX without D800-DFFF, so a decoder never meets half a surrogate pair.
            var notD = Grammar.Alt(Grammar.Byte((byte)'0', (byte)'9'), Grammar.Byte((byte)'a', (byte)'c'), Grammar.Byte((byte)'A', (byte)'C'),
                Grammar.Byte((byte)'e', (byte)'f'), Grammar.Byte((byte)'E', (byte)'F'));
            var unicode = Grammar.Seq(Grammar.Text("u"), Grammar.Alt(
                Grammar.Seq(notD, hex, hex, hex),
                Grammar.Seq(Grammar.Alt(Grammar.Text("d"), Grammar.Text("D")), Grammar.Byte((byte)'0', (byte)'7'), hex, hex)));
            var simple = Grammar.Alt("\"\\/bfnrt".Select(c => Grammar.Text(c.ToString())));
            return Grammar.Alt(plain, Grammar.Seq(Grammar.Text("\\"), Grammar.Alt(simple, unicode)));
        }
    }

    public static Grammar String(int minLength = 0, int? maxLength = null) =>
        Grammar.Seq(Quote, Grammar.Repeat(Character, minLength, maxLength), Quote);

    /// <summary>A string whose content matches <paramref name="content"/> (a regex's grammar over raw text), with JSON's escapes applied to it.</summary>
    public static Grammar StringMatching(Grammar content) => Grammar.Seq(Quote, Escaped(content), Quote);

    /// <summary>The exact JSON text of a value (a const or enum member), in this grammar's style (<see cref="Tokenization.PythonJson"/>).</summary>
    public static Grammar Literal(JsonElement value) => Grammar.Text(Tokenization.PythonJson.Serialize(value));

    /// <summary>An object key as it is written.</summary>
    public static Grammar Key(string name) => Literal(JsonSerializer.SerializeToElement(name));

    /// <summary>
    /// Rewrites a grammar over raw text into one over its JSON-escaped form: <c>"</c>, <c>\</c> and control bytes
    /// become their escapes. These are all ASCII, and no byte of a multi-byte UTF-8 character is ASCII, so the rewrite
    /// works byte by byte.
    /// </summary>
    public static Grammar Escaped(Grammar raw) => raw switch
    {
        BytesNode b => Grammar.Seq(b.Bytes.Select(x => Escaped(Grammar.Byte(x, x)))),
        RangeNode r => EscapedRange(r.Lo, r.Hi),
        SeqNode s => Grammar.Seq(s.Parts.Select(Escaped)),
        AltNode a => Grammar.Alt(a.Choices.Select(Escaped)),
        RepeatNode r => Grammar.Repeat(Escaped(r.Item), r.Min, r.Max),
        _ => raw,
    };

    static Grammar EscapedRange(byte lo, byte hi)
    {
        var choices = new List<Grammar>();
        int start = lo;
        for (int b = lo; b <= hi; b++)
        {
            string? escape = b switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\t' => "\\t",
                '\r' => "\\r",
                '\b' => "\\b",
                '\f' => "\\f",
                < 0x20 => "\\u" + b.ToString("x4", CultureInfo.InvariantCulture),
                _ => null,
            };
            if (escape is null) continue;
            if (b > start) choices.Add(Grammar.Byte((byte)start, (byte)(b - 1)));
            choices.Add(Grammar.Text(escape));
            start = b + 1;
        }
        if (start <= hi) choices.Add(Grammar.Byte((byte)start, hi));
        return Grammar.Alt(choices);
    }

    /// <summary>Any JSON value, nested at most <paramref name="depth"/> levels (below that, containers are empty).</summary>
    public static Grammar Any(int depth)
    {
        var scalars = new List<Grammar> { String(), Number(), Boolean, Null };
        if (depth <= 0) return Grammar.Alt([.. scalars, Grammar.Text("{}"), Grammar.Text("[]")]);
        return Grammar.Alt([.. scalars, AnyObject(depth), Array(Any(depth - 1), 0, null)]);
    }

    public static Grammar AnyObject(int depth) => Object(Any(depth - 1));

    /// <summary>An object of any keys whose values are <paramref name="value"/>.</summary>
    public static Grammar Object(Grammar value) =>
        Grammar.Seq(Grammar.Text("{"), Grammar.List(Grammar.Seq(String(), KeySeparator, value), ItemSeparator, 0, null), Grammar.Text("}"));

    public static Grammar Array(Grammar item, int min, int? max) =>
        Grammar.Seq(Grammar.Text("["), Grammar.List(item, ItemSeparator, min, max), Grammar.Text("]"));
}
