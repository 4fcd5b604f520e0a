using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Layers;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Kernels;

/// <summary>
/// The matrix work the layers hand to their device: the products over resident weights, the SwiGLU MLP and the MoE
/// experts. On the CPU they are this project's kernels (<see cref="CpuKernels"/>); on any other device, torch ops
/// (<see cref="TorchKernels"/>), which on the CPU are also the reference the kernels are tested against. Activations
/// are float32 [T, D] in and out.
/// </summary>
public interface ITensorKernels
{
    /// <summary>x [T, K] -> x Wᵢᵀ [T, Nᵢ] for each weight: several products of one input (q, k, v) in one pass.</summary>
    Tensor[] Linear(Tensor x, params MatrixWeight[] weights);

    /// <summary>Qwen3MLP: down(SiLU(x Gᵀ) * (x Uᵀ)), x [T, D] -> [T, D].</summary>
    Tensor GatedMlp(Tensor x, MatrixWeight gate, MatrixWeight up, MatrixWeight down);

    /// <summary>
    /// The weighted sum [T, D] of the outputs of the experts in <paramref name="experts"/> for tokens x [T, D] routed by
    /// ids and weights [T, K] (ids outside the group are someone else's).
    /// </summary>
    Tensor Experts(Tensor x, Tensor expertIds, Tensor routingWeights, ExpertWeights experts);

    /// <summary>
    /// Self-attention of a step, from the q [T, H*Dh], k and v [T, Hkv*Dh] projections to the heads' outputs [T, H*Dh]:
    /// per-head RMSNorm of q and k, RoPE with the step's tables cos, sin [T, Dh], the new keys and values written to
    /// the pool at the step's slots, then every token attends its sequence's cached keys (causal, within the window).
    /// </summary>
    Tensor Attention(Tensor q, Tensor k, Tensor v, AttentionLayer layer, Tensor cos, Tensor sin, AttentionMetadata meta, KvCachePool pool);

    /// <summary>Qwen3RMSNorm of each row of x [T, D] in float32, scaled by weight [D].</summary>
    Tensor RmsNorm(Tensor x, Tensor weight, double eps);

    /// <summary>Qwen3-MoE's router: logits x Gᵀ [T, E], softmax in float32, the top k, renormalised when asked.</summary>
    Routing Route(Tensor x, MatrixWeight gate, int topK, bool normalize);

    /// <summary>
    /// For each row of float32 logits [N, V]: the first index of its largest value and log Σ exp(row), so a token's
    /// log-probability is its logit minus that, with no [N, V] log-softmax made.
    /// </summary>
    (long[] Argmax, float[] LogSumExp) Normalizers(Tensor logits);
}

/// <summary>The one place a device's kernels are chosen.</summary>
public static class TensorKernels
{
    public static ITensorKernels For(Device device) => device.type == TorchSharp.DeviceType.CPU ? CpuKernels.Shared : TorchKernels.Shared;
}

/// <summary>Experts [Lo, Hi) of one layer: per local expert e, gate and up [I, D] and down [D, I].</summary>
public sealed record ExpertWeights(int Lo, int Hi, MatrixWeight[] Gate, MatrixWeight[] Up, MatrixWeight[] Down);
