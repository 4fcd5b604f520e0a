using System.Text.Json;
using System.Text.Json.Nodes;

namespace Qwen3Cluster.Model.Config;

/// <summary>Writes a <see cref="Qwen3Config"/> as the config.json transformers writes for it.</summary>
public static class Qwen3ConfigWriter
{
    public static string ToJson(this Qwen3Config c)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(c.Architecture),
            ["attention_bias"] = c.AttentionBias,
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = c.BosTokenId,
            ["eos_token_id"] = c.EosTokenIds.Count == 1 ? c.EosTokenIds[0] : new JsonArray(c.EosTokenIds.Select(i => (JsonNode)i).ToArray()),
            ["head_dim"] = c.HeadDim,
            ["hidden_act"] = c.HiddenAct,
            ["hidden_size"] = c.HiddenSize,
            ["initializer_range"] = 0.02,
            ["intermediate_size"] = c.IntermediateSize,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings,
            ["max_window_layers"] = c.MaxWindowLayers,
            ["model_type"] = c.IsMoe ? "qwen3_moe" : "qwen3",
            ["num_attention_heads"] = c.NumAttentionHeads,
            ["num_hidden_layers"] = c.NumHiddenLayers,
            ["num_key_value_heads"] = c.NumKeyValueHeads,
            ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_scaling"] = c.RopeScaling is { } s ? RopeScalingJson(s) : null,
            ["rope_theta"] = c.RopeTheta,
            ["sliding_window"] = c.SlidingWindow,
            ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["torch_dtype"] = c.TorchDtype,
            ["transformers_version"] = "4.51.0",
            ["use_cache"] = true,
            ["use_sliding_window"] = c.UseSlidingWindow,
            ["vocab_size"] = c.VocabSize,
        };
        if (c.IsMoe)
        {
            json["decoder_sparse_step"] = c.DecoderSparseStep;
            json["mlp_only_layers"] = new JsonArray(c.MlpOnlyLayers.Select(i => (JsonNode)i).ToArray());
            json["moe_intermediate_size"] = c.MoeIntermediateSize;
            json["norm_topk_prob"] = c.NormTopkProb;
            json["num_experts"] = c.NumExperts;
            json["num_experts_per_tok"] = c.NumExpertsPerTok;
            json["output_router_logits"] = false;
            json["router_aux_loss_coef"] = 0.001;
        }
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    static JsonObject RopeScalingJson(RopeScaling s)
    {
        var o = new JsonObject { ["rope_type"] = s.RopeType };
        if (s.Factor is { } f) o["factor"] = f;
        if (s.OriginalMaxPositionEmbeddings is { } m) o["original_max_position_embeddings"] = m;
        if (s.AttentionFactor is { } a) o["attention_factor"] = a;
        if (s.BetaFast is { } bf) o["beta_fast"] = bf;
        if (s.BetaSlow is { } bs) o["beta_slow"] = bs;
        if (s.Mscale is { } ms) o["mscale"] = ms;
        if (s.MscaleAllDim is { } md) o["mscale_all_dim"] = md;
        if (!s.Truncate) o["truncate"] = false;
        return o;
    }
}
