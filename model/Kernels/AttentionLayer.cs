using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// What a Qwen3Attention layer hands its kernels: its index in the pool, its head counts, the per-head RMSNorm weights
/// [Dh] of q and k and their epsilon, the softmax scaling and the sliding window (null: full causal attention).
/// </summary>
public sealed record AttentionLayer(int Layer, int Heads, int KvHeads, int HeadDim, double Scaling, int? SlidingWindow,
    Tensor QNormWeight, Tensor KNormWeight, double Eps);
