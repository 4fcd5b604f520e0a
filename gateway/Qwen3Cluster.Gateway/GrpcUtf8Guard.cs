using System.Text;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Qwen3Cluster.Protos.V1;

namespace Qwen3Cluster.Gateway;

/// <summary>
/// Protobuf refuses a string field holding invalid UTF-8 while deserializing, before any service code runs, and
/// gRPC then answers INTERNAL without saying which field. This reads the request first and answers
/// INVALID_ARGUMENT naming the field instead.
/// </summary>
public sealed class GrpcUtf8Guard(RequestDelegate next)
{
    static readonly Dictionary<string, MessageDescriptor> Requests = new()
    {
        ["/qwen3cluster.v1.Inference/Generate"] = GenerateRequest.Descriptor,
        ["/qwen3cluster.v1.Inference/Chat"] = ChatRequest.Descriptor,
        ["/qwen3cluster.v1.Inference/Tokenize"] = TokenizeRequest.Descriptor,
        ["/qwen3cluster.v1.Sessions/CreateSession"] = CreateSessionRequest.Descriptor,
        ["/qwen3cluster.v1.Sessions/GetSession"] = GetSessionRequest.Descriptor,
        ["/qwen3cluster.v1.Sessions/DeleteSession"] = DeleteSessionRequest.Descriptor,
    };

    static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);

    public async Task InvokeAsync(HttpContext http)
    {
        if (!Requests.TryGetValue(http.Request.Path.Value ?? "", out var descriptor)) { await next(http); return; }
        // gRPC lifts Kestrel's body limit for its calls and applies its own message limit; so does this read.
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = null;
        http.Request.EnableBuffering();
        var field = await FindInvalidFieldAsync(http, descriptor);
        http.Request.Body.Position = 0;
        if (field is not null)
        {
            http.Response.ContentType = "application/grpc";
            http.Response.Headers["grpc-status"] = "3";
            http.Response.Headers["grpc-message"] = Uri.EscapeDataString($"{field}: is not valid UTF-8");
            return;
        }
        await next(http);
    }

    /// <summary>
    /// Reads the one length-prefixed message of a unary or server-streaming call (a compression flag byte, a
    /// 4-byte big-endian length) unless it is compressed or over gRPC's size limit, which gRPC itself refuses.
    /// </summary>
    static async Task<string?> FindInvalidFieldAsync(HttpContext http, MessageDescriptor descriptor)
    {
        var header = new byte[5];
        if (await http.Request.Body.ReadAtLeastAsync(header, 5, throwOnEndOfStream: false, http.RequestAborted) < 5 || header[0] != 0) return null;
        int length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(1));
        if (length < 0 || length > GatewayHosting.MaxGrpcMessageBytes) return null;
        var message = new byte[length];
        if (await http.Request.Body.ReadAtLeastAsync(message, length, throwOnEndOfStream: false, http.RequestAborted) < length) return null;
        return InvalidField(message, descriptor, "");
    }

    /// <summary>The path of the first string field (searching nested messages) whose bytes are not UTF-8.</summary>
    static string? InvalidField(ReadOnlyMemory<byte> message, MessageDescriptor descriptor, string prefix)
    {
        var input = new CodedInputStream(message.ToArray());
        var counts = new Dictionary<int, int>();
        try
        {
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                int number = WireFormat.GetTagFieldNumber(tag);
                var field = descriptor.FindFieldByNumber(number);
                if (WireFormat.GetTagWireType(tag) != WireFormat.WireType.LengthDelimited || field is null)
                {
                    input.SkipLastField();
                    continue;
                }
                var bytes = input.ReadBytes();
                int index = counts[number] = counts.GetValueOrDefault(number) + 1;
                string name = prefix + field.Name + (field.IsRepeated ? $"[{index - 1}]" : "");
                if (field.FieldType == FieldType.String)
                {
                    try { Strict.GetString(bytes.Span); }
                    catch (DecoderFallbackException) { return name; }
                }
                else if (field.FieldType == FieldType.Message && InvalidField(bytes.Memory, field.MessageType, name + ".") is { } nested)
                {
                    return nested;
                }
            }
        }
        catch (InvalidProtocolBufferException)
        {
            // Malformed beyond strings: leave it to gRPC's own refusal.
        }
        return null;
    }
}
