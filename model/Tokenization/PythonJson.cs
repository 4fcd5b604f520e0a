using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;

namespace Qwen3Cluster.Model.Tokenization;

/// <summary>
/// JSON text exactly as transformers' <c>tojson</c> filter writes it, i.e. Python's
/// <c>json.dumps(x, ensure_ascii=False)</c>: ", " and ": " separators, keys in input order, non-ASCII kept,
/// integers verbatim and floats in <c>repr</c> form (1.0, 1e-05, 1e+16).
/// </summary>
static class PythonJson
{
    public static string Serialize(JsonElement value)
    {
        var sb = new StringBuilder();
        Write(sb, value);
        return sb.ToString();
    }

    static void Write(StringBuilder sb, JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                sb.Append('{');
                bool firstProperty = true;
                foreach (JsonProperty property in value.EnumerateObject())
                {
                    sb.Append(firstProperty ? "" : ", ");
                    firstProperty = false;
                    WriteString(sb, property.Name);
                    sb.Append(": ");
                    Write(sb, property.Value);
                }

                sb.Append('}');
                break;
            case JsonValueKind.Array:
                sb.Append('[');
                bool firstItem = true;
                foreach (JsonElement item in value.EnumerateArray())
                {
                    sb.Append(firstItem ? "" : ", ");
                    firstItem = false;
                    Write(sb, item);
                }

                sb.Append(']');
                break;
            case JsonValueKind.String:
                WriteString(sb, value.GetString()!);
                break;
            case JsonValueKind.Number:
                sb.Append(FormatNumber(value.GetRawText()));
                break;
            case JsonValueKind.True:
                sb.Append("true");
                break;
            case JsonValueKind.False:
                sb.Append("false");
                break;
            default:
                sb.Append("null");
                break;
        }
    }

    static void WriteString(StringBuilder sb, string text)
    {
        sb.Append('"');
        foreach (char c in text)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case < ' ': sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: sb.Append(c); break;
            }
        }

        sb.Append('"');
    }

    /// <summary>json.loads turns an integer literal into an int (kept exactly) and anything else into a float.</summary>
    internal static string FormatNumber(string literal)
    {
        if (literal.AsSpan().IndexOfAny(".eE") < 0)
        {
            return BigInteger.Parse(literal, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture);
        }

        return FloatRepr(double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    /// <summary>Python's <c>repr(float)</c>: shortest round-trip digits, exponent form outside [1e-4, 1e16).</summary>
    internal static string FloatRepr(double value)
    {
        if (double.IsNaN(value)) return "NaN";

        if (double.IsInfinity(value)) return value > 0 ? "Infinity" : "-Infinity";

        string sign = value < 0 || double.IsNegative(value) ? "-" : "";
        (string digits, int point) = ShortestDigits(Math.Abs(value));
        if (digits.Length == 0) return sign + "0.0";

        // 'point' places the decimal point: value = 0.<digits> * 10^point.
        if (point <= -4 || point > 16)
        {
            string mantissa = digits.Length == 1 ? digits : $"{digits[0]}.{digits[1..]}";
            int exponent = point - 1;
            return $"{sign}{mantissa}e{(exponent < 0 ? '-' : '+')}{Math.Abs(exponent):00}";
        }

        if (point <= 0)
        {
            return $"{sign}0.{new string('0', -point)}{digits}";
        }

        return point >= digits.Length
            ? $"{sign}{digits}{new string('0', point - digits.Length)}.0"
            : $"{sign}{digits[..point]}.{digits[point..]}";
    }

    static (string Digits, int Point) ShortestDigits(double value)
    {
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        int exponent = 0;
        int e = text.IndexOf('E');
        if (e >= 0)
        {
            exponent = int.Parse(text.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            text = text[..e];
        }

        int dot = text.IndexOf('.');
        string whole = dot < 0 ? text : text[..dot];
        string digits = dot < 0 ? text : whole + text[(dot + 1)..];
        int point = whole.Length + exponent;
        int leadingZeros = digits.Length - digits.TrimStart('0').Length;
        return (digits.Trim('0'), point - leadingZeros);
    }
}
