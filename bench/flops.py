"""FLOPs of a forward pass counted from a Qwen3 config.json (a multiply-add counts two), for bench/run.sh and
bench/summarize.py to set figures against the float32 multiply-add peak that qwen3 kernels measures."""


def forward_flops(cfg, first_context, tokens, logit_rows):
    """`tokens` tokens through every layer, the first attending `first_context` keys and each next one more, and the
    LM head for `logit_rows` of them: projections, attention scores and values, the router and the MLP (MoE: the
    chosen experts)."""
    d, layers, dh = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["head_dim"]
    h, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    experts = cfg.get("num_experts", 0)
    ff = cfg["num_experts_per_tok"] * 3 * cfg["moe_intermediate_size"] if experts else 3 * cfg["intermediate_size"]
    per_layer = lambda context: 2 * (d * (h + 2 * kv) * dh + h * dh * d + 2 * h * dh * context + d * experts + d * ff)
    return sum(layers * per_layer(first_context + t) for t in range(tokens)) + logit_rows * 2 * d * cfg["vocab_size"]
