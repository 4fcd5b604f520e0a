using Qwen3Cluster.Model.Cache;
using Qwen3Cluster.Model.Config;
using Qwen3Cluster.Model.Engine;
using Qwen3Cluster.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace Qwen3Cluster.Model.Layers;

/// <summary>
/// One pipeline stage of Qwen3(Moe)ForCausalLM: decoder layers [Start, End), with the token embedding on the
/// first stage and the final norm + LM head on the last. State-dict keys equal the checkpoint's names.
/// </summary>
public sealed class ModelStage : nn.Module
{
    [ComponentName(Name = "model")] readonly Qwen3Model _model;
    [ComponentName(Name = "lm_head")] readonly LinearProjection? _lmHead;
    readonly RotaryEmbedding _rope;

    public Qwen3Config Config { get; }
    public StageRange Range { get; }
    public Device Device { get; }

    public ModelStage(Qwen3Config config, StageRange range, IWeightSource weights) : base("stage")
    {
        Config = config;
        Range = range;
        Device = weights.Device;
        _model = new Qwen3Model(config, range, weights);
        if (range.IsLast)
        {
            _lmHead = config.TieWordEmbeddings
                ? new LinearProjection("lm_head", _model.EmbedTokens!.Weight.alias(), config.VocabSize, config.HiddenSize)
                : new LinearProjection(weights, "lm_head", config.HiddenSize, config.VocabSize);
        }

        _rope = new RotaryEmbedding(config, Device);
        RegisterComponents();
    }

    public IReadOnlyList<DecoderLayer> Layers => _model.Layers;

    /// <summary>A KV pool sized for this stage's layers.</summary>
    public KvCachePool CreatePool(int numBlocks, int blockSize) =>
        new(Range.Start, Range.Count, numBlocks, blockSize, Config.NumKeyValueHeads, Config.HeadDim, Device);

    /// <summary>
    /// Runs the stage for one step. Input: token ids [T] (int64) on the first stage, hidden states [T, D]
    /// otherwise. Output: logits [rows, V] for <see cref="ForwardContext.LogitRows"/> on the last stage,
    /// hidden states [T, D] otherwise. Tensors are disposed by hand rather than by a scope, since a scope is
    /// per thread and the experts may be awaited on another.
    /// </summary>
    public async ValueTask<Tensor> ForwardAsync(Tensor input, ForwardContext context, KvCachePool pool,
        IExpertDispatcher experts, CancellationToken cancellationToken = default)
    {
        using var meta = new AttentionMetadata(context, Device);
        var (cos, sin) = _rope.Tables(meta.Positions);
        Tensor? h = null;
        try
        {
            h = Range.IsFirst ? _model.EmbedTokens!.forward(input) : input.alias();
            foreach (var layer in _model.Layers)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Tensor attended, ffInput;
                using (KernelProfile.Measure("attention"))
                    (attended, ffInput) = layer.Attend(h, cos, sin, meta, pool);
                h.Dispose();
                h = attended;
                using (ffInput)
                {
                    Tensor ff;
                    if (layer.IsSparse)
                    {
                        var routeClock = KernelProfile.Measure("router");
                        using var routing = layer.Route(ffInput);
                        routeClock.Dispose();
                        long expertsClock = KernelProfile.Start();
                        ff = await experts.RunAsync(layer.Index, ffInput, routing, cancellationToken);
                        KernelProfile.Stop("experts", expertsClock);
                    }
                    else
                    {
                        using (KernelProfile.Measure("dense_mlp")) ff = layer.DenseFeedForward(ffInput);
                    }

                    using (ff) h.add_(ff);
                }
            }
            using var head = KernelProfile.Measure("lm_head");
            return Range.IsLast ? Logits(h, context.LogitRows) : h.alias();
        }
        finally
        {
            h?.Dispose();
            cos.Dispose();
            sin.Dispose();
        }
    }

    Tensor Logits(Tensor h, int[] rows)
    {
        using var scope = NewDisposeScope();
        var picked = h.index_select(0, tensor(rows.Select(r => (long)r).ToArray(), device: Device)); // [N, D]
        var normed = _model.Norm!.forward(picked);
        using var product = KernelProfile.Measure("lm_head.product");
        return _lmHead!.forward(normed).MoveToOuterDisposeScope();                 // [N, V]
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _rope.Dispose();
        base.Dispose(disposing);
    }
}
