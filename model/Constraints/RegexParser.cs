namespace Qwen3Cluster.Model.Constraints;

/// <summary>
/// The regex subset a constraint can enforce, matched whole (as vLLM's <c>guided_regex</c> and JSON Schema's
/// <c>pattern</c> are generated): literals, <c>.</c>, classes with ranges and negation, <c>\d \w \s</c> and their
/// negations, escapes (<c>\n \t \xHH \uHHHH</c>), groups (<c>(...)</c>, <c>(?:...)</c>, <c>(?&lt;name&gt;...)</c>),
/// <c>|</c>, and the quantifiers <c>* + ? {n} {n,} {n,m}</c> (a lazy <c>?</c> after them changes nothing here).
/// A leading <c>^</c> and trailing <c>$</c> are accepted. Backreferences, lookaround and other anchors are refused.
/// </summary>
public sealed class RegexParser
{
    /// <summary>Beyond this a counted repetition would blow up the automaton.</summary>
    public const int MaxRepeat = 1000;

    readonly string _pattern;
    int _at;

    RegexParser(string pattern) => _pattern = pattern;

    public static Grammar Parse(string pattern)
    {
        var parser = new RegexParser(pattern);
        if (parser.Peek('^')) parser._at++;
        var grammar = parser.Alternation();
        if (parser._at < pattern.Length) throw parser.Error($"unexpected '{pattern[parser._at]}'");
        return grammar;
    }

    bool Peek(char c) => _at < _pattern.Length && _pattern[_at] == c;

    GrammarException Error(string what) => new($"regex /{_pattern}/ at {_at}: {what}");

    Grammar Alternation()
    {
        var choices = new List<Grammar> { Sequence() };
        while (Peek('|'))
        {
            _at++;
            choices.Add(Sequence());
        }
        return Grammar.Alt(choices);
    }

    Grammar Sequence()
    {
        var parts = new List<Grammar>();
        while (_at < _pattern.Length && !Peek('|') && !Peek(')'))
        {
            if (Peek('$') && _at == _pattern.Length - 1)
            {
                _at++;
                break;
            }
            parts.Add(Quantified(Atom()));
        }
        return Grammar.Seq(parts);
    }

    Grammar Quantified(Grammar atom)
    {
        while (_at < _pattern.Length)
        {
            char c = _pattern[_at];
            int min, max;
            switch (c)
            {
                case '*':
                    (min, max) = (0, -1);
                    break;
                case '+':
                    (min, max) = (1, -1);
                    break;
                case '?':
                    (min, max) = (0, 1);
                    break;
                case '{' when TryCount(out min, out max):
                    break;
                default:
                    return atom;
            }
            if (c != '{') _at++;
            if (Peek('?') || Peek('+')) _at++;
            atom = Grammar.Repeat(atom, min, max < 0 ? null : max);
        }
        return atom;
    }

    /// <summary>Reads {n}, {n,}, {,m} or {n,m}; a brace that is not one of these is a literal, as in Python.</summary>
    bool TryCount(out int min, out int max)
    {
        min = max = 0;
        int close = _pattern.IndexOf('}', _at);
        if (close < 0) return false;
        string body = _pattern[(_at + 1)..close];
        var parts = body.Split(',');
        // Python reads {,n} as {0,n}.
        if (parts.Length > 2 || !int.TryParse(parts[0].Length == 0 && parts.Length == 2 && parts[1].Length > 0 ? "0" : parts[0], out min)) return false;
        if (parts.Length == 1) max = min;
        else if (parts[1].Length == 0) max = -1;
        else if (!int.TryParse(parts[1], out max)) return false;
        if (min > MaxRepeat || max > MaxRepeat) throw Error($"a count above {MaxRepeat} is not supported");
        if (max >= 0 && max < min) throw Error($"{{{body}}} has its maximum below its minimum");
        _at = close + 1;
        return true;
    }

    Grammar Atom()
    {
        char c = _pattern[_at++];
        switch (c)
        {
            case '(':
                if (Peek('?'))
                {
                    _at++;
                    if (Peek(':')) _at++;
                    else if (Peek('<') && _at + 1 < _pattern.Length && _pattern[_at + 1] is not ('=' or '!')) _at = NameEnd('>');
                    else if (Peek('P') && _at + 1 < _pattern.Length && _pattern[_at + 1] == '<') _at = NameEnd('>');
                    else throw Error("lookaround and inline flags are not supported");
                }
                var inner = Alternation();
                if (!Peek(')')) throw Error("missing ')'");
                _at++;
                return inner;
            case ')':
                throw Error("unbalanced ')'");
            case '[':
                return Class().ToGrammar();
            case '.':
                return CodePointSet.Single('\n').Complement().ToGrammar();
            case '\\':
                return Escape(inClass: false).ToGrammar();
            case '*' or '+' or '?':
                throw Error($"'{c}' has nothing to repeat");
            case '^' or '$':
                throw Error($"'{c}' is only supported at the start and end of the pattern");
            default:
                return CodePointSet.Single(ReadCodePoint(c)).ToGrammar();
        }
    }

    int NameEnd(char close)
    {
        int end = _pattern.IndexOf(close, _at);
        if (end < 0) throw Error("unterminated group name");
        return end + 1;
    }

    /// <summary>A character whose UTF-16 form may be a surrogate pair.</summary>
    int ReadCodePoint(char c)
    {
        if (char.IsHighSurrogate(c) && _at < _pattern.Length && char.IsLowSurrogate(_pattern[_at])) return char.ConvertToUtf32(c, _pattern[_at++]);
        return c;
    }

    CodePointSet Class()
    {
        bool negated = Peek('^');
        if (negated) _at++;
        var set = CodePointSet.Of();
        bool first = true;
        while (true)
        {
            if (_at >= _pattern.Length) throw Error("missing ']'");
            char c = _pattern[_at++];
            if (c == ']' && !first) break;
            first = false;
            CodePointSet item;
            int lo;
            if (c == '\\')
            {
                item = Escape(inClass: true);
                if (item.Ranges is not [var (a, b)] || a != b)
                {
                    set = set.Union(item);
                    continue;
                }
                lo = a;
            }
            else
            {
                lo = ReadCodePoint(c);
            }
            if (Peek('-') && _at + 1 < _pattern.Length && _pattern[_at + 1] != ']')
            {
                _at++;
                char h = _pattern[_at++];
                int hi = h == '\\' ? Escape(inClass: true) is { Ranges: [var (x, y)] } e && x == y ? x : throw Error("a range must end in one character") : ReadCodePoint(h);
                if (hi < lo) throw Error("a range runs backwards");
                set = set.Union(CodePointSet.Of((lo, hi)));
            }
            else
            {
                set = set.Union(CodePointSet.Single(lo));
            }
        }
        return negated ? set.Complement() : set;
    }

    static readonly CodePointSet Digits = CodePointSet.Of(('0', '9'));
    static readonly CodePointSet Word = CodePointSet.Of(('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_'));
    static readonly CodePointSet Space = CodePointSet.Of((' ', ' '), ('\t', '\r'));

    CodePointSet Escape(bool inClass)
    {
        if (_at >= _pattern.Length) throw Error("a trailing backslash");
        char c = _pattern[_at++];
        switch (c)
        {
            case 'd': return Digits;
            case 'D': return Digits.Complement();
            case 'w': return Word;
            case 'W': return Word.Complement();
            case 's': return Space;
            case 'S': return Space.Complement();
            case 'n': return CodePointSet.Single('\n');
            case 't': return CodePointSet.Single('\t');
            case 'r': return CodePointSet.Single('\r');
            case 'f': return CodePointSet.Single('\f');
            case 'v': return CodePointSet.Single('\v');
            case '0': return CodePointSet.Single(0);
            case 'x': return CodePointSet.Single(Hex(2));
            case 'u': return CodePointSet.Single(Hex(4));
            case 'b' when inClass: return CodePointSet.Single('\b');
            default:
                if (char.IsAsciiLetterOrDigit(c)) throw Error($"'\\{c}' is not supported (no backreferences or anchors inside the pattern)");
                return CodePointSet.Single(ReadCodePoint(c));
        }
    }

    int Hex(int digits)
    {
        if (_at + digits > _pattern.Length || !int.TryParse(_pattern.AsSpan(_at, digits), System.Globalization.NumberStyles.HexNumber, null, out int value))
            throw Error($"expected {digits} hex digits");
        _at += digits;
        return value;
    }
}
