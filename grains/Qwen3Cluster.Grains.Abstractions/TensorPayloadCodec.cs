using System.Buffers;
using Orleans.Serialization.Buffers;
using Orleans.Serialization.Codecs;
using Orleans.Serialization.Serializers;
using Orleans.Serialization.WireProtocol;

namespace Qwen3Cluster.Grains;

/// <summary>
/// Writes a <see cref="TensorPayload"/> as three fields: dtype, shape and the raw bytes in one length-prefixed run.
/// The type is sealed and immutable, so calls within a silo pass it by reference without copying.
/// </summary>
[RegisterSerializer]
public sealed class TensorPayloadCodec(ICodecProvider codecs) : IFieldCodec<TensorPayload>
{
    readonly IFieldCodec<long[]> _shapeCodec = codecs.GetCodec<long[]>();

    public void WriteField<TBufferWriter>(ref Writer<TBufferWriter> writer, uint fieldIdDelta, Type? expectedType, TensorPayload? value)
        where TBufferWriter : IBufferWriter<byte>
    {
        if (ReferenceCodec.TryWriteReferenceField(ref writer, fieldIdDelta, expectedType, value)) return;
        writer.WriteStartObject(fieldIdDelta, expectedType, typeof(TensorPayload));
        StringCodec.WriteField(ref writer, 0, value!.DType);
        _shapeCodec.WriteField(ref writer, 1, typeof(long[]), value.Shape);
        ByteArrayCodec.WriteField(ref writer, 1, value.Data);
        writer.WriteEndObject();
    }

    public TensorPayload ReadValue<TInput>(ref Reader<TInput> reader, Field field)
    {
        if (field.IsReference) return ReferenceCodec.ReadReference<TensorPayload, TInput>(ref reader, field)!;
        field.EnsureWireTypeTagDelimited();
        uint placeholder = ReferenceCodec.CreateRecordPlaceholder(reader.Session);
        string dtype = "";
        long[] shape = [];
        byte[] data = [];
        uint id = 0;
        Field header = default;
        while (true)
        {
            reader.ReadFieldHeader(ref header);
            if (header.IsEndBaseOrEndObject) break;
            id += header.FieldIdDelta;
            switch (id)
            {
                case 0: dtype = StringCodec.ReadValue(ref reader, header)!; break;
                case 1: shape = _shapeCodec.ReadValue(ref reader, header)!; break;
                case 2: data = ByteArrayCodec.ReadValue(ref reader, header)!; break;
                default: reader.ConsumeUnknownField(header); break;
            }
        }
        var result = new TensorPayload(dtype, shape, data);
        ReferenceCodec.RecordObject(reader.Session, result, placeholder);
        return result;
    }
}
