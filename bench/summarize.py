"""Step 2 of bench/run.sh in one table: medians over the rounds of qwen3 generate (and llama-bench when it ran),
the weight bytes a decoded token reads, the fraction of the roofline that the decode rate reaches (against the
median of the read bandwidths measured in the run, and against the highest, the conservative choice on a machine
whose bandwidth moves between minutes), peak RSS against the checkpoint, and our figures over llama.cpp's at equal
bytes per weight (bf16 / F16, int8 / Q8_0).

    python3 bench/summarize.py RESULTS_DIR BF16_MODEL_DIR F32_MODEL_DIR
"""
import glob
import json
import os
import re
import statistics
import sys

from flops import forward_flops

out, bf16_dir, f32_dir = sys.argv[1:4]


def files(pattern):
    return sorted(glob.glob(os.path.join(out, pattern)))


def checkpoint_gb(directory):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(directory, "*.safetensors"))) / 1e9


bandwidths = [json.load(open(p))["read_g_bps"] for p in files("bandwidth-r*.json")]
kernels = os.path.join(out, "kernels.json")
if os.path.exists(kernels):
    bandwidths.append(json.load(open(kernels))["read_g_bps"])
roofline = max(bandwidths)
median_bandwidth = statistics.median(bandwidths)
print(f"read bandwidth over the run: {min(bandwidths)}-{roofline} GB/s, median {median_bandwidth:.1f}")

ours = {}
for name, directory in (("bf16", bf16_dir), ("int8", bf16_dir), ("f32", f32_dir)):
    runs = [json.load(open(p)) for p in files(f"generate-{name}-r*.json")]
    if not runs:
        continue
    rss = max(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(p).read()).group(1)) / 1e6
              for p in files(f"generate-{name}-r*.time"))
    ours[name] = {
        "prefill": statistics.median(r["prefill_tokens_per_s"] for r in runs),
        "decode": statistics.median(r["decode_tokens_per_s"] for r in runs),
        "bytes": runs[0]["decode_bytes_per_token"] / 1e9,
        "rss": rss,
        "size": checkpoint_gb(directory),
        "rounds": len(runs),
    }

print(f"{'qwen3 generate':16} {'prefill tok/s':>13} {'decode tok/s':>12} {'GB/token':>9} {'GB/s':>6} "
      f"{'of median bw':>12} {'of highest':>10} {'peak RSS':>20}")
for name, r in ours.items():
    gbps = r["decode"] * r["bytes"]
    print(f"  {name:14} {r['prefill']:13.1f} {r['decode']:12.1f} {r['bytes']:9.3f} {gbps:6.1f} {gbps / median_bandwidth:12.1%} "
          f"{gbps / roofline:10.1%} {r['rss']:6.2f} GB ({r['rss'] / r['size']:.2f}x {r['size']:.2f})")

# Prefill against the compute roofline: the prompt's multiply-adds (every layer for its 128 tokens, the LM head for the
# last), counted from the config, at the median prefill rate, over the float32 multiply-add peak of qwen3 kernels
# (int8's products run on integer units, which that peak does not bound).
peak = json.load(open(kernels)).get("peak_gflops", 0) if os.path.exists(kernels) else 0
if peak and ours:
    prompt = 128
    per_token = forward_flops(json.load(open(os.path.join(bf16_dir, "config.json"))), 1, prompt, 1) / prompt / 1e9
    print(f"prefill computes {per_token:.3f} GFLOP a prompt token: " + ", ".join(
        f"{name} {r['prefill'] * per_token:.1f} GFLOP/s ({r['prefill'] * per_token / peak:.0%})" for name, r in ours.items())
        + f" of the {peak} GFLOP/s float32 multiply-add peak")


def llama(name):
    runs = [json.load(open(p)) for p in files(f"{name}-r*.json")]
    if not runs:
        return None
    pp = [t["avg_ts"] for run in runs for t in run if t["n_prompt"] > 0 and t["n_gen"] == 0]
    tg = [t["avg_ts"] for run in runs for t in run if t["n_gen"] > 0 and t["n_prompt"] == 0]
    return {"prefill": statistics.median(pp), "decode": statistics.median(tg), "rounds": len(runs)}


pairs = (("llama-F16", "bf16"), ("llama-Q8_0", "int8"), ("ik-F16", "bf16"), ("ik-Q8_0", "int8"))
rows = [(name, mine, llama(name)) for name, mine in pairs]
if any(theirs for _, _, theirs in rows):
    print(f"{'llama-bench':16} {'pp128 tok/s':>13} {'tg64 tok/s':>12} {'GB/s':>6} {'of median bw':>12}   ours / theirs: prefill, decode")
    for name, mine, theirs in rows:
        if theirs is None or mine not in ours:
            continue
        gbps = theirs["decode"] * ours[mine]["bytes"]
        print(f"  {name:14} {theirs['prefill']:13.1f} {theirs['decode']:12.1f} {gbps:6.1f} {gbps / median_bandwidth:12.1%}   {mine}: "
              f"{ours[mine]['prefill'] / theirs['prefill']:.2f}x, {ours[mine]['decode'] / theirs['decode']:.2f}x")
