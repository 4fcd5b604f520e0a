namespace Qwen3Cluster.Model.Checkpoint;

/// <summary>The safetensors dtypes a Qwen3 checkpoint may hold, with their sizes.</summary>
public enum SafetensorsDType { F32, BF16, F16 }

public static class SafetensorsDTypes
{
    public static int ByteSize(this SafetensorsDType dtype) => dtype == SafetensorsDType.F32 ? 4 : 2;

    public static bool TryParse(string? text, out SafetensorsDType dtype)
    {
        switch (text)
        {
            case "F32": dtype = SafetensorsDType.F32; return true;
            case "BF16": dtype = SafetensorsDType.BF16; return true;
            case "F16": dtype = SafetensorsDType.F16; return true;
            default: dtype = default; return false;
        }
    }

    public static string Name(this SafetensorsDType dtype) => dtype.ToString();
}
