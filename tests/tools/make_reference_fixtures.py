#!/usr/bin/env python3
"""Independent reference fixtures for the Qwen3 / Qwen3-MoE engine tests.

Standard library only (no numpy, no torch).  The script

  1. writes two tiny random-weights checkpoints in Hugging Face format
     (config.json, generation_config.json, model.safetensors with F32 tensors):
       tests/fixtures/tiny-dense-yarn/   Qwen3ForCausalLM, YaRN rope scaling, tied embeddings
       tests/fixtures/tiny-moe-mixed/    Qwen3MoeForCausalLM, norm_topk_prob=false,
                                         mlp_only_layers=[1] (one dense MLP layer among MoE layers)
  2. reads the weights back from the safetensors files it wrote (with its own parser) and runs the
     forward pass in float64 pure Python, following Hugging Face transformers (eager attention):
       huggingface/transformers@9ee3f431c32e9e5f6c0888f6b2b0ca3f6c289dd6
           src/transformers/models/qwen3/modeling_qwen3.py
       huggingface/transformers@16b6c53c8ec3a720bd45c1c377bf94e1d01249c5
           src/transformers/models/qwen3_moe/modeling_qwen3_moe.py
       zucchini-nlp/transformers@26892c16b782513fdf938920653228ef63a19d7d (a 5.x tree)
           src/transformers/modeling_rope_utils.py  (_compute_yarn_parameters)
       compared with huggingface/transformers@ef46806472a64b0013ed413781e3afed82bfa047
           src/transformers/modeling_rope_utils.py  (the older 4.4x _compute_yarn_parameters)
  3. records, for a fixed 12-token prompt, per-position argmax / top-5 log-probs / logsumexp /
     margin / a sample of raw logits, plus a 6-token greedy continuation (whole sequence
     recomputed at each step), into tests/fixtures/<name>.reference.json;
  4. cross-checks the numbers with a second, independently written implementation (token-by-token
     with a KV cache, math.fsum dot products, rotary embedding written pair-wise instead of with
     rotate_half), checks invariants, and estimates the float32 error with a third run that rounds
     every intermediate tensor to float32.

Run from anywhere:  python3 tests/tools/make_reference_fixtures.py
Every run writes byte-identical files.
"""

import hashlib
import json
import math
import operator
import os
import platform
import random
import struct
import sys
import time
from array import array

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
SCRIPT = "tests/tools/make_reference_fixtures.py"

PROMPT = [17, 200, 3, 99, 300, 7, 256, 128, 45, 333, 12, 64]
N_GENERATE = 6
SAMPLE_IDS = [0, 1, 2, 50, 100, 383]
TOP_K_REPORTED = 5

TRANSFORMERS_SOURCES = [
    {
        "repo": "huggingface/transformers",
        "commit": "9ee3f431c32e9e5f6c0888f6b2b0ca3f6c289dd6",
        "path": "src/transformers/models/qwen3/modeling_qwen3.py",
        "used_for": "Qwen3RMSNorm, Qwen3MLP, rotate_half/apply_rotary_pos_emb, repeat_kv, eager_attention_forward, "
        "Qwen3Attention (q_norm/k_norm per head before RoPE), Qwen3DecoderLayer, Qwen3RotaryEmbedding, "
        "Qwen3ForCausalLM",
    },
    {
        "repo": "huggingface/transformers",
        "commit": "16b6c53c8ec3a720bd45c1c377bf94e1d01249c5",
        "path": "src/transformers/models/qwen3_moe/modeling_qwen3_moe.py",
        "used_for": "Qwen3MoeSparseMoeBlock (softmax in float, top-k, renormalise only if norm_topk_prob), "
        "Qwen3MoeDecoderLayer sparse/dense choice (mlp_only_layers, decoder_sparse_step), Qwen3MoeForCausalLM",
    },
    {
        "repo": "zucchini-nlp/transformers",
        "commit": "26892c16b782513fdf938920653228ef63a19d7d",
        "path": "src/transformers/modeling_rope_utils.py",
        "used_for": "_compute_yarn_parameters as in transformers 5.x (rope_parameters era): explicit `factor` wins; "
        "max_position_embeddings / original_max_position_embeddings is used only when factor is None; the "
        "correction range uses original_max_position_embeddings; truncate defaults to true. (The code index "
        "held no 5.x copy of huggingface/transformers' own file, so this fork of a transformers maintainer "
        "was read; the function body matches other 5.x copies in the index.)",
    },
    {
        "repo": "huggingface/transformers",
        "commit": "ef46806472a64b0013ed413781e3afed82bfa047",
        "path": "src/transformers/modeling_rope_utils.py",
        "used_for": "compared only: the older (4.4x) _compute_yarn_parameters, which ignores "
        "original_max_position_embeddings and uses config.max_position_embeddings for the correction range "
        "(see yarn.legacy_4_4x_inv_freq in the JSON)",
    },
]

# ----------------------------------------------------------------------------------------------
# Checkpoint definitions
# ----------------------------------------------------------------------------------------------

COMMON_CONFIG = {
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "sliding_window": None,
    "torch_dtype": "float32",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
}

DENSE_CONFIG = dict(
    COMMON_CONFIG,
    architectures=["Qwen3ForCausalLM"],
    model_type="qwen3",
    vocab_size=384,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=48,
    rms_norm_eps=1e-06,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    max_position_embeddings=256,
    max_window_layers=2,
    rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
)

MOE_CONFIG = dict(
    COMMON_CONFIG,
    architectures=["Qwen3MoeForCausalLM"],
    model_type="qwen3_moe",
    vocab_size=384,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=40,
    moe_intermediate_size=24,
    num_experts=6,
    num_experts_per_tok=2,
    norm_topk_prob=False,
    decoder_sparse_step=1,
    mlp_only_layers=[1],
    output_router_logits=False,
    router_aux_loss_coef=0.001,
    rms_norm_eps=1e-06,
    rope_theta=1000000.0,
    rope_scaling=None,
    tie_word_embeddings=False,
    max_position_embeddings=256,
    max_window_layers=3,
)

# Same shape as the real Qwen3 generation_config.json (the tests ask for greedy explicitly).
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
    "transformers_version": "4.51.0",
}

CHECKPOINTS = [
    ("tiny-dense-yarn", DENSE_CONFIG, 20250601),
    ("tiny-moe-mixed", MOE_CONFIG, 20250602),
]

# Standard deviations of the random weights.  Embeddings / lm_head are larger so that the logits
# spread (std ~2) and greedy margins are not tiny; router weights are larger so routing is decisive.
STD_EMBED = 0.35
STD_PROJ = 0.25
STD_ROUTER = 0.3
NORM_JITTER = 0.1  # norm weights = 1 + NORM_JITTER * gauss


def is_sparse_layer(cfg, layer_idx):
    """Qwen3MoeDecoderLayer.__init__: sparse iff not in mlp_only_layers and (idx+1) % decoder_sparse_step == 0."""
    if cfg["model_type"] != "qwen3_moe":
        return False
    return (layer_idx not in cfg["mlp_only_layers"]) and (
        cfg["num_experts"] > 0 and (layer_idx + 1) % cfg["decoder_sparse_step"] == 0
    )


def tensor_specs(cfg):
    """(name, shape, kind) for every tensor, in the order transformers names them."""
    H, hd = cfg["hidden_size"], cfg["head_dim"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    specs = [("model.embed_tokens.weight", [cfg["vocab_size"], H], "embed")]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        specs += [
            (p + "input_layernorm.weight", [H], "norm"),
            (p + "self_attn.q_proj.weight", [nq * hd, H], "proj"),
            (p + "self_attn.k_proj.weight", [nkv * hd, H], "proj"),
            (p + "self_attn.v_proj.weight", [nkv * hd, H], "proj"),
            (p + "self_attn.o_proj.weight", [H, nq * hd], "proj"),
            (p + "self_attn.q_norm.weight", [hd], "norm"),
            (p + "self_attn.k_norm.weight", [hd], "norm"),
            (p + "post_attention_layernorm.weight", [H], "norm"),
        ]
        if is_sparse_layer(cfg, i):
            I = cfg["moe_intermediate_size"]
            specs.append((p + "mlp.gate.weight", [cfg["num_experts"], H], "router"))
            for e in range(cfg["num_experts"]):
                q = p + "mlp.experts.%d." % e
                specs += [
                    (q + "gate_proj.weight", [I, H], "proj"),
                    (q + "up_proj.weight", [I, H], "proj"),
                    (q + "down_proj.weight", [H, I], "proj"),
                ]
        else:
            I = cfg["intermediate_size"]
            specs += [
                (p + "mlp.gate_proj.weight", [I, H], "proj"),
                (p + "mlp.up_proj.weight", [I, H], "proj"),
                (p + "mlp.down_proj.weight", [H, I], "proj"),
            ]
    specs.append(("model.norm.weight", [H], "norm"))
    if not cfg["tie_word_embeddings"]:
        specs.append(("lm_head.weight", [cfg["vocab_size"], H], "embed"))
    return specs


def make_tensor(seed, name, shape, kind):
    """Deterministic values, rounded to float32.  Each tensor has its own RNG (seeded by seed and name)."""
    rng = random.Random("%d:%s" % (seed, name))
    n = 1
    for d in shape:
        n *= d
    if kind == "norm":
        vals = [1.0 + NORM_JITTER * rng.gauss(0.0, 1.0) for _ in range(n)]
    else:
        std = {"embed": STD_EMBED, "proj": STD_PROJ, "router": STD_ROUTER}[kind]
        vals = [std * rng.gauss(0.0, 1.0) for _ in range(n)]
    return array("f", vals)


# ----------------------------------------------------------------------------------------------
# safetensors writing and (independent) reading
# ----------------------------------------------------------------------------------------------


def f32_le_bytes(arr):
    a = array("f", arr)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def write_safetensors(path, tensors):
    """tensors: dict name -> (shape, array('f')).  Layout as safetensors writes it: names sorted,
    u64-LE header length, JSON header (padded with spaces to a multiple of 8), raw data."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        shape, arr = tensors[name]
        b = f32_le_bytes(arr)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Returns dict name -> (shape, list of float).  Validates the header."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    end_max = 0
    for name, info in header.items():
        if name == "__metadata__":
            assert info == {"format": "pt"}, info
            continue
        assert info["dtype"] == "F32", (name, info)
        start, end = info["data_offsets"]
        n = 1
        for d in info["shape"]:
            n *= d
        assert end - start == 4 * n, (name, info)
        vals = struct.unpack("<%df" % n, data[base + start : base + end])
        out[name] = (info["shape"], list(vals))
        end_max = max(end_max, end)
    assert base + end_max == len(data), "trailing bytes in %s" % path
    return out


def as_matrix(shape, flat):
    rows, cols = shape
    return [flat[r * cols : (r + 1) * cols] for r in range(rows)]


# ----------------------------------------------------------------------------------------------
# Model weights in a convenient Python structure
# ----------------------------------------------------------------------------------------------


def load_model(cfg, tensors):
    def mat(name):
        shape, flat = tensors[name]
        return as_matrix(shape, flat)

    def vec(name):
        return tensors[name][1]

    m = {"embed": mat("model.embed_tokens.weight"), "norm": vec("model.norm.weight"), "layers": []}
    m["lm_head"] = m["embed"] if cfg["tie_word_embeddings"] else mat("lm_head.weight")
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        L = {
            "in_norm": vec(p + "input_layernorm.weight"),
            "post_norm": vec(p + "post_attention_layernorm.weight"),
            "q": mat(p + "self_attn.q_proj.weight"),
            "k": mat(p + "self_attn.k_proj.weight"),
            "v": mat(p + "self_attn.v_proj.weight"),
            "o": mat(p + "self_attn.o_proj.weight"),
            "q_norm": vec(p + "self_attn.q_norm.weight"),
            "k_norm": vec(p + "self_attn.k_norm.weight"),
            "sparse": is_sparse_layer(cfg, i),
        }
        if L["sparse"]:
            L["router"] = mat(p + "mlp.gate.weight")
            L["experts"] = [
                {
                    "gate": mat(p + "mlp.experts.%d.gate_proj.weight" % e),
                    "up": mat(p + "mlp.experts.%d.up_proj.weight" % e),
                    "down": mat(p + "mlp.experts.%d.down_proj.weight" % e),
                }
                for e in range(cfg["num_experts"])
            ]
        else:
            L["mlp"] = {
                "gate": mat(p + "mlp.gate_proj.weight"),
                "up": mat(p + "mlp.up_proj.weight"),
                "down": mat(p + "mlp.down_proj.weight"),
            }
        m["layers"].append(L)
    return m


# ----------------------------------------------------------------------------------------------
# RoPE parameters (modeling_rope_utils)
# ----------------------------------------------------------------------------------------------


def default_inv_freq(base, dim):
    # _compute_default_rope_parameters: 1 / base ** (arange(0, dim, 2) / dim)
    return [1.0 / (base ** (i / dim)) for i in range(0, dim, 2)], 1.0


def yarn_inv_freq(base, dim, rope_scaling, max_position_embeddings, legacy=False):
    """_compute_yarn_parameters.

    transformers 5.x (zucchini-nlp/transformers@26892c16, rope_parameters era):
        factor = rope_parameters["factor"]; original = rope_parameters["original_max_position_embeddings"]
        (standardised config); only if factor is None: factor = max_position_embeddings / original.
        The correction range is computed from `original`.
    transformers ~4.50-4.57 (the "DeekSeek-V3" NOTE variant seen in copies in the index): if
        "original_max_position_embeddings" is in rope_scaling, factor is REPLACED by
        max_position_embeddings / original_max_position_embeddings, even when an explicit factor
        disagrees; the correction range also uses `original`.
    transformers 4.4x (huggingface/transformers@ef468064): factor from rope_scaling, but the
        correction range uses config.max_position_embeddings (original_max_position_embeddings unused).
    For tiny-dense-yarn the first two agree (256 / 64 == 4.0 == factor); `legacy=True` gives the 4.4x one.
    """
    factor = rope_scaling.get("factor")
    original = rope_scaling.get("original_max_position_embeddings") or max_position_embeddings
    if factor is None:
        factor = max_position_embeddings / original
    if legacy:
        original = max_position_embeddings

    def get_mscale(scale, mscale=1.0):
        if scale <= 1:
            return 1.0
        return 0.1 * mscale * math.log(scale) + 1.0

    attention_factor = rope_scaling.get("attention_factor")
    mscale = rope_scaling.get("mscale")
    mscale_all_dim = rope_scaling.get("mscale_all_dim")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)

    beta_fast = rope_scaling.get("beta_fast") or 32
    beta_slow = rope_scaling.get("beta_slow") or 1

    def find_correction_dim(num_rotations):
        return (dim * math.log(original / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low = find_correction_dim(beta_fast)
    high = find_correction_dim(beta_slow)
    if rope_scaling.get("truncate", True):
        low = math.floor(low)
        high = math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # Prevent singularity

    half = dim // 2
    ramp = [min(max((i - low) / (high - low), 0.0), 1.0) for i in range(half)]
    extrapolation_factor = [1.0 - r for r in ramp]
    pos_freqs = [base ** (i / dim) for i in range(0, dim, 2)]
    inv_extra = [1.0 / p for p in pos_freqs]
    inv_inter = [1.0 / (factor * p) for p in pos_freqs]
    inv_freq = [
        inv_inter[i] * (1.0 - extrapolation_factor[i]) + inv_extra[i] * extrapolation_factor[i] for i in range(half)
    ]
    details = {
        "factor": factor,
        "original_max_position_embeddings": original,
        "beta_fast": beta_fast,
        "beta_slow": beta_slow,
        "correction_range_low_high": [low, high],
        "extrapolation_factor": extrapolation_factor,
        "attention_factor": attention_factor,
    }
    return inv_freq, attention_factor, details


def rope_params(cfg):
    dim = cfg["head_dim"]  # partial_rotary_factor is 1.0 for Qwen3
    rs = cfg.get("rope_scaling")
    rope_type = rs.get("rope_type", rs.get("type")) if isinstance(rs, dict) else "default"
    if rope_type == "default":
        inv, att = default_inv_freq(cfg["rope_theta"], dim)
        return inv, att, {"rope_type": "default", "inv_freq": inv, "attention_factor": att}
    assert rope_type == "yarn", rope_type
    inv, att, det = yarn_inv_freq(cfg["rope_theta"], dim, rs, cfg["max_position_embeddings"])
    leg_inv, leg_att, leg_det = yarn_inv_freq(cfg["rope_theta"], dim, rs, cfg["max_position_embeddings"], legacy=True)
    det = dict(det, rope_type="yarn", inv_freq=inv,
               legacy_4_4x_inv_freq=leg_inv,
               legacy_4_4x_correction_range_low_high=leg_det["correction_range_low_high"])
    return inv, att, det


def cos_sin(inv_freq, att, pos):
    # Qwen3RotaryEmbedding.forward: freqs = inv_freq * pos; emb = cat(freqs, freqs); cos/sin * attention_scaling
    freqs = [f * pos for f in inv_freq]
    emb = freqs + freqs
    return [math.cos(e) * att for e in emb], [math.sin(e) * att for e in emb]


# ----------------------------------------------------------------------------------------------
# Implementation A: whole sequence at once, written after transformers' modules
# ----------------------------------------------------------------------------------------------

_mul = operator.mul


def ident(v):
    return v


def round_f32(v):
    return array("f", v).tolist()


def linear(W, x, rnd):
    # nn.Linear without bias: y = x @ W.T
    return rnd([sum(map(_mul, row, x)) for row in W])


def rmsnorm(x, w, eps, rnd):
    # Qwen3RMSNorm: w * (x * rsqrt(mean(x^2) + eps))   (transformers does this in float32; here float64)
    var = sum(v * v for v in x) / len(x)
    s = 1.0 / math.sqrt(var + eps)
    return rnd([wi * (v * s) for wi, v in zip(w, x)])


def rotate_half(x):
    h = len(x) // 2
    return [-v for v in x[h:]] + x[:h]


def apply_rope(x, cos, sin, rnd):
    r = rotate_half(x)
    return rnd([x[i] * cos[i] + r[i] * sin[i] for i in range(len(x))])


def silu(v):
    return v / (1.0 + math.exp(-v))


def mlp(M, x, rnd):
    # down_proj(act_fn(gate_proj(x)) * up_proj(x))
    g = linear(M["gate"], x, rnd)
    u = linear(M["up"], x, rnd)
    return linear(M["down"], rnd([silu(a) * b for a, b in zip(g, u)]), rnd)


def softmax(v):
    m = max(v)
    e = [math.exp(a - m) for a in v]
    s = sum(e)
    return [a / s for a in e]


def sparse_moe(cfg, L, x, rnd, trace=None):
    # Qwen3MoeSparseMoeBlock.forward
    router_logits = linear(L["router"], x, rnd)
    probs = rnd(softmax(router_logits))  # softmax in float
    order = sorted(range(len(probs)), key=lambda e: (-probs[e], e))  # torch.topk (sorted)
    top = order[: cfg["num_experts_per_tok"]]
    weights = [probs[e] for e in top]
    if cfg["norm_topk_prob"]:
        s = sum(weights)
        weights = [w / s for w in weights]
    if trace is not None:
        trace.append((top, weights, router_logits))
    out = [0.0] * len(x)
    # index_add_ over experts in ascending expert index order
    for e, w in sorted(zip(top, weights)):
        y = rnd([w * v for v in mlp(L["experts"][e], x, rnd)])
        out = rnd([o + v for o, v in zip(out, y)])
    return out


def rope_interleaved(x, cos, sin, rnd):
    # WRONG on purpose (GPT-J / Meta-style adjacent pairs); only used to show the fixture detects it
    h = len(x) // 2
    out = [0.0] * len(x)
    for i in range(h):
        c, s = cos[i], sin[i]
        out[2 * i] = x[2 * i] * c - x[2 * i + 1] * s
        out[2 * i + 1] = x[2 * i + 1] * c + x[2 * i] * s
    return rnd(out)


def forward_full(cfg, model, rope, ids, rnd=ident, trace=None, variant=None):
    """Logits for every position of `ids` (list of lists).  `variant` selects a deliberately wrong
    variation (sensitivity checks only): "interleaved_rope", "qk_norm_after_rope"."""
    inv_freq, att = rope
    H, hd = cfg["hidden_size"], cfg["head_dim"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    n_rep = nq // nkv
    eps = cfg["rms_norm_eps"]
    scaling = hd ** -0.5
    T = len(ids)
    cs = [cos_sin(inv_freq, att, p) for p in range(T)]
    cs = [(rnd(c), rnd(s)) for c, s in cs]
    h = [list(model["embed"][t]) for t in ids]
    for L in model["layers"]:
        xs = [rmsnorm(v, L["in_norm"], eps, rnd) for v in h]
        Q, K, V = [], [], []
        for t in range(T):
            q = linear(L["q"], xs[t], rnd)
            k = linear(L["k"], xs[t], rnd)
            v = linear(L["v"], xs[t], rnd)
            c, s = cs[t]
            # view(..., -1, head_dim) -> q_norm / k_norm over head_dim -> RoPE
            if variant == "qk_norm_after_rope":
                Q.append([rmsnorm(apply_rope(q[j * hd : (j + 1) * hd], c, s, rnd), L["q_norm"], eps, rnd) for j in range(nq)])
                K.append([rmsnorm(apply_rope(k[j * hd : (j + 1) * hd], c, s, rnd), L["k_norm"], eps, rnd) for j in range(nkv)])
            else:
                rot = rope_interleaved if variant == "interleaved_rope" else apply_rope
                Q.append([rot(rmsnorm(q[j * hd : (j + 1) * hd], L["q_norm"], eps, rnd), c, s, rnd) for j in range(nq)])
                K.append([rot(rmsnorm(k[j * hd : (j + 1) * hd], L["k_norm"], eps, rnd), c, s, rnd) for j in range(nkv)])
            V.append([v[j * hd : (j + 1) * hd] for j in range(nkv)])
        new_h = []
        for t in range(T):
            heads = []
            for j in range(nq):
                kv = j // n_rep  # repeat_kv: query head j reads key/value head j // n_rep
                # causal mask: keys 0..t only (masked entries get exp(-inf) = 0 in eager softmax)
                scores = rnd([sum(map(_mul, Q[t][j], K[s][kv])) * scaling for s in range(t + 1)])
                p = rnd(softmax(scores))
                heads.extend(rnd([sum(p[s] * V[s][kv][d] for s in range(t + 1)) for d in range(hd)]))
            a = linear(L["o"], heads, rnd)
            r = rnd([x + y for x, y in zip(h[t], a)])
            z = rmsnorm(r, L["post_norm"], eps, rnd)
            if L["sparse"]:
                f = sparse_moe(cfg, L, z, rnd, trace)
            else:
                f = mlp(L["mlp"], z, rnd)
            new_h.append(rnd([x + y for x, y in zip(r, f)]))
        h = new_h
    out = []
    for t in range(T):
        z = rmsnorm(h[t], model["norm"], eps, rnd)
        out.append(linear(model["lm_head"], z, rnd))
    return out


# ----------------------------------------------------------------------------------------------
# Implementation B: written separately -- token by token with a KV cache, fsum dot products,
# pair-wise rotary embedding, log-sum-exp softmax.
# ----------------------------------------------------------------------------------------------


def dot_b(a, b):
    return math.fsum(x * y for x, y in zip(a, b))


def matvec_b(W, x):
    return [dot_b(row, x) for row in W]


def rms_b(x, w, eps):
    ms = math.fsum(v * v for v in x) / len(x)
    inv = 1.0 / math.sqrt(ms + eps)
    return [v * inv * wi for v, wi in zip(x, w)]


def rope_pairwise_b(x, inv_freq, att, pos):
    # dims i and i + d/2 form one rotating pair with angle pos * inv_freq[i]
    h = len(x) // 2
    out = [0.0] * len(x)
    for i in range(h):
        a = pos * inv_freq[i]
        c, s = math.cos(a) * att, math.sin(a) * att
        x1, x2 = x[i], x[i + h]
        out[i] = x1 * c - x2 * s
        out[i + h] = x2 * c + x1 * s
    return out


def swiglu_b(M, x):
    g = matvec_b(M["gate"], x)
    u = matvec_b(M["up"], x)
    act = [gi * u_i / (1.0 + math.exp(-gi)) for gi, u_i in zip(g, u)]
    return matvec_b(M["down"], act)


class CachedModelB:
    def __init__(self, cfg, model, rope):
        self.cfg, self.m = cfg, model
        self.inv_freq, self.att = rope
        self.cache = [([], []) for _ in model["layers"]]  # per layer: keys[pos][kv_head], values[pos][kv_head]

    def step(self, token):
        cfg, m = self.cfg, self.m
        hd, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        group = nq // nkv
        eps = cfg["rms_norm_eps"]
        pos = len(self.cache[0][0])
        x = list(m["embed"][token])
        for li, L in enumerate(m["layers"]):
            keys, vals = self.cache[li]
            n = rms_b(x, L["in_norm"], eps)
            q, k, v = matvec_b(L["q"], n), matvec_b(L["k"], n), matvec_b(L["v"], n)
            qh = [rope_pairwise_b(rms_b(q[j * hd : (j + 1) * hd], L["q_norm"], eps), self.inv_freq, self.att, pos) for j in range(nq)]
            kh = [rope_pairwise_b(rms_b(k[j * hd : (j + 1) * hd], L["k_norm"], eps), self.inv_freq, self.att, pos) for j in range(nkv)]
            keys.append(kh)
            vals.append([v[j * hd : (j + 1) * hd] for j in range(nkv)])
            attn = []
            for j in range(nq):
                g = j // group
                sc = [dot_b(qh[j], keys[s][g]) / math.sqrt(hd) for s in range(pos + 1)]
                mx = max(sc)
                lse = mx + math.log(math.fsum(math.exp(a - mx) for a in sc))
                w = [math.exp(a - lse) for a in sc]
                attn.extend(math.fsum(w[s] * vals[s][g][d] for s in range(pos + 1)) for d in range(hd))
            x = [a + b for a, b in zip(x, matvec_b(L["o"], attn))]
            n2 = rms_b(x, L["post_norm"], eps)
            if L["sparse"]:
                rl = matvec_b(L["router"], n2)
                mx = max(rl)
                lse = mx + math.log(math.fsum(math.exp(a - mx) for a in rl))
                pr = [math.exp(a - lse) for a in rl]
                chosen = sorted(range(len(pr)), key=lambda e: pr[e], reverse=True)[: cfg["num_experts_per_tok"]]
                denom = math.fsum(pr[e] for e in chosen) if cfg["norm_topk_prob"] else 1.0
                parts = [[pr[e] / denom * y for y in swiglu_b(L["experts"][e], n2)] for e in chosen]
                ff = [math.fsum(col) for col in zip(*parts)]
            else:
                ff = swiglu_b(L["mlp"], n2)
            x = [a + b for a, b in zip(x, ff)]
        return matvec_b(m["lm_head"], rms_b(x, m["norm"], eps))


# ----------------------------------------------------------------------------------------------
# Logit analysis
# ----------------------------------------------------------------------------------------------


def analyse(logits):
    m = max(logits)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in logits))
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    top = [[i, logits[i] - lse] for i in order[:TOP_K_REPORTED]]
    return {
        "argmax": order[0],
        "top5": top,
        "logsumexp": lse,
        "margin": logits[order[0]] - logits[order[1]],
        "logits_sample": [logits[i] for i in SAMPLE_IDS],
    }, lse


def max_abs_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def log_softmax(v):
    m = max(v)
    lse = m + math.log(math.fsum(math.exp(x - m) for x in v))
    return [x - lse for x in v]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def dump_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def build_checkpoint(name, cfg, seed):
    folder = os.path.join(FIXTURES, name)
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for tname, shape, kind in tensor_specs(cfg):
        tensors[tname] = (shape, make_tensor(seed, tname, shape, kind))
    st_path = os.path.join(folder, "model.safetensors")
    write_safetensors(st_path, tensors)
    dump_json(os.path.join(folder, "config.json"), dict(sorted(cfg.items())))
    dump_json(os.path.join(folder, "generation_config.json"), GENERATION_CONFIG)
    n_params = sum(len(a) for _, a in tensors.values())
    print("  wrote %s: %d tensors, %d parameters, %d bytes" % (os.path.relpath(st_path, REPO), len(tensors), n_params,
                                                               os.path.getsize(st_path)))
    return st_path, n_params


def run_checkpoint(name, cfg, seed):
    t0 = time.time()
    print("[%s] building checkpoint (seed %d)" % (name, seed))
    st_path, n_params = build_checkpoint(name, cfg, seed)
    tensors = read_safetensors(st_path)
    expected = {n: s for n, s, _ in tensor_specs(cfg)}
    assert {n: s for n, (s, _) in tensors.items()} == expected, "tensor set / shapes differ"
    model = load_model(cfg, tensors)
    inv_freq, att, rope_details = rope_params(cfg)
    rope = (inv_freq, att)

    # --- A: prompt forward (float64) -----------------------------------------------------------
    print("[%s] forward A (float64, whole prompt)" % name)
    trace = []
    logits_prompt = forward_full(cfg, model, rope, PROMPT, trace=trace)
    positions = []
    for t, lg in enumerate(logits_prompt):
        info, lse = analyse(lg)
        info = dict({"position": t, "token": PROMPT[t]}, **info)
        info["next_token_logprob"] = (lg[PROMPT[t + 1]] - lse) if t + 1 < len(PROMPT) else None
        positions.append(info)

    # --- A: greedy generation, whole sequence recomputed each step ----------------------------
    print("[%s] greedy generation A (%d steps, full recompute)" % (name, N_GENERATE))
    seq = list(PROMPT)
    steps = []
    all_logits_a = [list(r) for r in logits_prompt]
    last = logits_prompt[-1]
    for step in range(N_GENERATE):
        info, lse = analyse(last)
        tok = info["argmax"]
        steps.append({"step": step, "position": len(seq), "token": tok, "logprob": last[tok] - lse,
                      "margin": info["margin"], "top5": info["top5"], "logsumexp": lse})
        seq.append(tok)
        if step + 1 < N_GENERATE:
            full = forward_full(cfg, model, rope, seq)
            # prefix logits must not change when tokens are appended (causality)
            causal_err = max_abs_diff(full[: len(all_logits_a)], all_logits_a)
            assert causal_err < 1e-12, ("causality violated", causal_err)
            all_logits_a = full
            last = full[-1]
        print("    step %d -> token %d (margin %.4f)" % (step, tok, info["margin"]))
    generated = [s["token"] for s in steps]
    # one more pass over prompt + all generated tokens, for the checks below
    full = forward_full(cfg, model, rope, seq)
    assert max_abs_diff(full[: len(all_logits_a)], all_logits_a) < 1e-12
    all_logits_a = full
    assert len(all_logits_a) == len(seq)

    # --- B: independent implementation with KV cache -------------------------------------------
    print("[%s] cross-check B (KV cache, fsum, pair-wise RoPE)" % name)
    b = CachedModelB(cfg, model, rope)
    logits_b = [b.step(t) for t in PROMPT]
    gen_b = []
    lb = logits_b[-1]
    gen_logits_b = []
    for _ in range(N_GENERATE):
        tok = max(range(len(lb)), key=lambda i: lb[i])
        gen_b.append(tok)
        gen_logits_b.append(lb)
        lb = b.step(tok)
    diff_ab_logits = max_abs_diff(logits_prompt, logits_b)
    lp_a = [log_softmax(r) for r in logits_prompt]
    lp_b = [log_softmax(r) for r in logits_b]
    diff_ab_logprobs = max_abs_diff(lp_a, lp_b)
    gen_lp_b = [log_softmax(r)[t] for r, t in zip(gen_logits_b, gen_b)]
    diff_ab_gen_logprob = max(abs(x - s["logprob"]) for x, s in zip(gen_lp_b, steps))
    assert gen_b == generated, ("A and B generate differently", generated, gen_b)
    assert diff_ab_logits < 1e-9, diff_ab_logits
    assert diff_ab_gen_logprob < 1e-9, diff_ab_gen_logprob

    # --- C: float32 emulation (every intermediate rounded to float32) -------------------------
    print("[%s] float32 emulation C" % name)
    logits_c = forward_full(cfg, model, rope, seq, rnd=round_f32)
    lp_full_a = [log_softmax(r) for r in all_logits_a]
    lp_c = [log_softmax(r) for r in logits_c]
    diff_ac_logprobs = max_abs_diff(lp_full_a, lp_c)
    diff_ac_logits = max_abs_diff(all_logits_a, logits_c)
    argmax_c = [max(range(len(r)), key=lambda i: r[i]) for r in logits_c]
    argmax_a = [max(range(len(r)), key=lambda i: r[i]) for r in all_logits_a]
    f32_same_greedy = argmax_c == argmax_a

    # --- invariants ---------------------------------------------------------------------------
    prob_sum_err = max(abs(math.fsum(math.exp(v) for v in r) - 1.0) for r in lp_full_a)
    assert prob_sum_err < 1e-12, prob_sum_err
    assert positions[-1]["argmax"] == generated[0]
    for s in range(1, N_GENERATE):
        assert argmax_a[len(PROMPT) - 1 + s] == generated[s]
    assert all(0 <= t < cfg["vocab_size"] for t in PROMPT + generated)
    for p in positions:
        lps = [lp for _, lp in p["top5"]]
        assert lps == sorted(lps, reverse=True) and lps[0] <= 0.0
        assert p["top5"][0][0] == p["argmax"]

    # --- sensitivity: how far common mistakes move the numbers (shows the fixture detects them) --
    print("[%s] sensitivity to deliberate mistakes" % name)
    variants = []  # (label, cfg, rope, variant)
    dim = cfg["head_dim"]
    if rope_details["rope_type"] == "yarn":
        variants.append(("plain_rope_no_yarn", cfg, default_inv_freq(cfg["rope_theta"], dim), None))
        variants.append(("yarn_without_attention_factor", cfg, (inv_freq, 1.0), None))
        variants.append(("yarn_legacy_4_4x_correction_range", cfg, (rope_details["legacy_4_4x_inv_freq"], att), None))
    variants.append(("interleaved_rope_pairs", cfg, rope, "interleaved_rope"))
    variants.append(("qk_norm_after_rope", cfg, rope, "qk_norm_after_rope"))
    if cfg["model_type"] == "qwen3_moe":
        variants.append(("norm_topk_prob_true", dict(cfg, norm_topk_prob=True), rope, None))
    sensitivity = {}
    for label, vcfg, vrope, var in variants:
        lv = forward_full(vcfg, model, vrope, seq, variant=var)
        lpv = [log_softmax(r) for r in lv]
        amv = [max(range(len(r)), key=lambda i: r[i]) for r in lv]
        sensitivity[label] = {
            "max_abs_logprob_diff": max_abs_diff(lp_full_a, lpv),
            "argmax_changes_at_positions": [i for i, (x, y) in enumerate(zip(argmax_a, amv)) if x != y],
        }
        assert sensitivity[label]["max_abs_logprob_diff"] > 1e-3, (label, "fixture cannot tell this mistake apart")

    routing = None
    if any(L["sparse"] for L in model["layers"]):
        # prompt only: trace holds, per sparse layer in order, one entry per position
        sparse_layers = [i for i, L in enumerate(model["layers"]) if L["sparse"]]
        T = len(PROMPT)
        routing = {}
        for k, li in enumerate(sparse_layers):
            entries = trace[k * T : (k + 1) * T]
            routing["layer_%d" % li] = [{"experts": e, "weights": w} for e, w, _ in entries]
        # smallest gap between the k-th and (k+1)-th router probability (routing decisiveness)
        gaps = []
        for e, w, rl in trace:
            pr = sorted(softmax(rl), reverse=True)
            gaps.append(pr[cfg["num_experts_per_tok"] - 1] - pr[cfg["num_experts_per_tok"]])
        routing["min_topk_boundary_prob_gap"] = min(gaps)
        experts_used = sorted({e for ent in trace for e in ent[0]})
        routing["experts_used_by_prompt"] = experts_used

    prompt_margins = [p["margin"] for p in positions]
    gen_margins = [s["margin"] for s in steps]
    min_margin = min(prompt_margins + gen_margins)
    min_gen_margin = min(gen_margins)

    result = {
        "name": name,
        "checkpoint": name + "/",
        "model_safetensors_sha256": sha256(st_path),
        "parameters": n_params,
        "architecture": cfg["architectures"][0],
        "prompt": PROMPT,
        "logits_sample_ids": SAMPLE_IDS,
        "positions": positions,
        "generated": generated,
        "generated_logprobs": [s["logprob"] for s in steps],
        "generation_steps": steps,
        "min_margin": min_margin,
        "min_margin_prompt_positions": min(prompt_margins),
        "min_margin_generation": min_gen_margin,
        "rope": rope_details,
        "layers": [("sparse_moe" if L["sparse"] else "dense_mlp") for L in model["layers"]],
        "sensitivity": sensitivity,
        "checks": {
            "impl_b_max_abs_logit_diff_prompt": diff_ab_logits,
            "impl_b_max_abs_logprob_diff_prompt": diff_ab_logprobs,
            "impl_b_max_abs_generated_logprob_diff": diff_ab_gen_logprob,
            "impl_b_generated_tokens_equal": gen_b == generated,
            "prob_sum_max_abs_error": prob_sum_err,
            "f32_emulation_max_abs_logit_diff": diff_ac_logits,
            "f32_emulation_max_abs_logprob_diff": diff_ac_logprobs,
            "f32_emulation_same_argmax_all_positions": f32_same_greedy,
            "causality_prefix_logits_unchanged": True,
        },
        "script": SCRIPT,
        "command": "python3 " + SCRIPT,
        "python_version": platform.python_version(),
        "float_precision": "float64 (Python float) from float32 weights",
        "transformers_sources": TRANSFORMERS_SOURCES,
        # commit of the modeling file followed for this architecture (all sources: transformers_sources)
        "transformers_commit": TRANSFORMERS_SOURCES[1 if cfg["model_type"] == "qwen3_moe" else 0]["commit"],
    }
    if routing is not None:
        result["moe_routing_prompt"] = routing
    out = os.path.join(FIXTURES, name + ".reference.json")
    dump_json(out, result)
    print("[%s] wrote %s  generated=%s  min_margin=%.5f  A-B logprob diff=%.2e  f32-emu logprob diff=%.2e  (%.1fs)"
          % (name, os.path.relpath(out, REPO), generated, min_margin, diff_ab_logprobs, diff_ac_logprobs,
             time.time() - t0))
    return result


def main():
    t0 = time.time()
    print("make_reference_fixtures: Python %s, writing under %s" % (platform.python_version(),
                                                                    os.path.relpath(FIXTURES, os.getcwd())))
    for name, cfg, seed in CHECKPOINTS:
        run_checkpoint(name, cfg, seed)
    print("done in %.1fs" % (time.time() - t0))


if __name__ == "__main__":
    main()
