#!/usr/bin/env bash
# Benchmarks on bench-moe (a scaled-down Qwen3-30B-A3B: 8 layers, hidden 1024, 16/4 heads of 64, 32 experts of 512,
# top-4, vocab 151936 untied; 735M parameters, 227M read per decoded token), measured in one run so that the ratios
# and the fractions of the bandwidth roofline are comparable on a shared machine:
#   1. the read bandwidth, the multiply-add peak, the matrix kernels and decode attention's walk over the KV pool
#      (qwen3 kernels);
#   2. qwen3 generate, one stream, 128 prompt tokens, 64 new tokens, with f32, bf16 and int8 weights, in ROUNDS
#      rounds, each round also running llama-bench on the same checkpoint as F16 and Q8_0 GGUFs when LLAMA_BENCH is
#      given (interleaved: ours bf16, llama F16, ours int8, llama Q8_0, ours f32), with the read bandwidth measured
#      again before every round: medians, ratios, and the fraction of the highest bandwidth seen that decode reaches;
#   3. int8 against bf16 (qwen3 quantization-report), and a prefill of a LONG_PROMPT-token prompt (2048 by default)
#      with bf16 and int8 weights (and llama-bench -p LONG_PROMPT -n 0 on the same GGUFs when given);
#   4. constrained decoding (a JSON Schema) at 1 and 16 streams: each token's mask time against the step's;
#   5. the embedded default (qwen3 serve) under qwen3 bench at concurrency 1, 4 and 16;
#   6. the three-process cluster (silos/local/run.sh) under the same load at 1 and 16, and at 1 with its experts cut into
#      two slices (Qwen3:Model:ExpertSlices) rather than four groups;
# with grain calls per decode step read from the cluster's own counters, and the arithmetic the 16-stream figure
# computes against the multiply-add peak. Results go to bench/results/<time>/.
#
#   bench/run.sh [BF16_MODEL_DIR]     (default: makes bench-moe, bf16 and f32, under ~/.cache/qwen3cluster/)
#   THREADS=2 (default)               kernel and llama.cpp threads
#   ROUNDS=3 (default)                rounds of step 2
#   LLAMA_BENCH=/path/to/llama-bench  with LLAMA_GGUF_F16 and LLAMA_GGUF_Q8_0: llama.cpp's figures in the same rounds
#   IK_LLAMA_BENCH=/path/to/llama-bench   ik_llama.cpp's too (run-time repacking, -rtr 1), on the same GGUFs
#   SKIP_SERVING=1                    stop after step 4
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
out="$here/results/$(date -u +%Y-%m-%dT%H%M)"
mkdir -p "$out"
say() { echo "$@" | tee -a "$out/summary.txt"; }

echo "building the qwen3 tool..." >&2
dotnet build "$root/tools/Qwen3Cluster.Cli" -c Release -nologo -v quiet >/dev/null
QWEN3="dotnet $root/tools/Qwen3Cluster.Cli/bin/Release/net10.0/qwen3.dll"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/qwen3cluster
model=${1:-$cache/bench-moe-bf16}
f32model=$cache/bench-moe-f32
[[ -f "$model/config.json" ]] || $QWEN3 make-model --preset bench-moe --dtype bf16 --seed 1 --out "$model"
[[ -f "$f32model/config.json" ]] || $QWEN3 make-model --preset bench-moe --dtype f32 --seed 1 --out "$f32model"
say "bench-moe, $THREADS threads, $(date -u +%Y-%m-%dT%H:%MZ), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"

say "== read bandwidth and kernels (qwen3 kernels)"
$QWEN3 kernels --threads "$THREADS" --json >"$out/kernels.json"
python3 - "$out/kernels.json" <<'PY' | tee -a "$out/summary.txt"
import json, sys
k = json.load(open(sys.argv[1]))
print(f"read bandwidth {k['read_g_bps']} GB/s, float32 multiply-add peak {k.get('peak_gflops')} GFLOP/s; "
      f"libtorch GEMM f32 {k['torch_prefill_gflops']}, bf16 {k['torch_bf16_prefill_gflops']} GFLOP/s")
for f in k['formats']:
    print(f"  {f['format']:5} decode product {f['decode_g_bps']} GB/s ({f['decode_fraction_of_bandwidth']:.0%}; {f['decode_cached_g_bps']} GB/s from cache), "
          f"prefill product {f['prefill_gflops']} GFLOP/s; a layer's experts: decode {f['moe_decode_g_bps']} GB/s, prefill {f['moe_prefill_gflops']} GFLOP/s")
for a in k.get('attention') or []:
    print(f"  decode attention, {a['streams']} stream(s) at {a['context']} tokens: {a['microseconds']} us a layer, "
          f"keys and values at {a['g_bps']} GB/s ({a['fraction_of_bandwidth']:.0%})")
PY

prompt=$(python3 -c "import random; r = random.Random(1); print(','.join(str(r.randrange(1000, 150000)) for _ in range(128)))")
generate() { # name, model, quantize, round
  /usr/bin/time -v $QWEN3 generate --model "$2" --prompt-ids "$prompt" --max-tokens 64 --temperature 0 --threads "$THREADS" \
    --quantize "$3" --json >"$out/generate-$1-r$4.json" 2>"$out/generate-$1-r$4.time"
}
llama() { # name, binary, gguf, round, extra args
  "$2" -m "$3" -t "$THREADS" -p 128 -n 64 -r 1 -o json "${@:5}" >"$out/$1-r$4.json" 2>/dev/null
}
say "== qwen3 generate (128 prompt tokens, 64 new, one stream) in $ROUNDS rounds${LLAMA_BENCH:+, interleaved with llama-bench}"
for round in $(seq "$ROUNDS"); do
  echo "  round $round of $ROUNDS..." >&2
  $QWEN3 kernels --threads "$THREADS" --bandwidth --json >"$out/bandwidth-r$round.json"
  generate bf16 "$model" none "$round"
  [[ -n "${LLAMA_BENCH:-}" ]] && llama llama-F16 "$LLAMA_BENCH" "$LLAMA_GGUF_F16" "$round"
  generate int8 "$model" int8 "$round"
  [[ -n "${LLAMA_BENCH:-}" ]] && llama llama-Q8_0 "$LLAMA_BENCH" "$LLAMA_GGUF_Q8_0" "$round"
  generate f32 "$f32model" none "$round"
  if [[ -n "${IK_LLAMA_BENCH:-}" ]]; then
    llama ik-F16 "$IK_LLAMA_BENCH" "$LLAMA_GGUF_F16" "$round" -rtr 1
    llama ik-Q8_0 "$IK_LLAMA_BENCH" "$LLAMA_GGUF_Q8_0" "$round" -rtr 1
  fi
done
python3 "$here/summarize.py" "$out" "$model" "$f32model" | tee -a "$out/summary.txt"
$QWEN3 quantization-report --model "$model" --threads "$THREADS" --json >"$out/quantization.json" 2>/dev/null
python3 -c "import json; q = json.load(open('$out/quantization.json')); print(f\"int8 vs bf16: greedy agreement {q['greedy_agreement']:.1%} over {q['positions']} positions, top-5 log-prob difference max {q['max_top5_logprob_difference']}, mean {q['mean_top5_logprob_difference']}\")" | tee -a "$out/summary.txt"

say "== prefill of a ${LONG_PROMPT:-2048}-token prompt (once each${LLAMA_BENCH:+, llama-bench -p ${LONG_PROMPT:-2048} -n 0 between})"
long_prompt=$(python3 -c "import random; r = random.Random(2); print(','.join(str(r.randrange(1000, 150000)) for _ in range(${LONG_PROMPT:-2048})))")
for quantize in none int8; do
  $QWEN3 generate --model "$model" --prompt-ids "$long_prompt" --max-tokens 1 --temperature 0 --threads "$THREADS" \
    --quantize "$quantize" --json >"$out/long-$quantize.json" 2>/dev/null
  gguf=$([[ $quantize == none ]] && echo "${LLAMA_GGUF_F16:-}" || echo "${LLAMA_GGUF_Q8_0:-}")
  if [[ -n "${LLAMA_BENCH:-}" ]]; then
    "$LLAMA_BENCH" -m "$gguf" -t "$THREADS" -p "${LONG_PROMPT:-2048}" -n 0 -r 1 -o json >"$out/long-llama-$quantize.json" 2>/dev/null
  fi
  if [[ -n "${IK_LLAMA_BENCH:-}" ]]; then
    "$IK_LLAMA_BENCH" -m "$gguf" -t "$THREADS" -p "${LONG_PROMPT:-2048}" -n 0 -r 1 -o json -rtr 1 >"$out/long-ik-$quantize.json" 2>/dev/null
  fi
done
python3 - "$out" <<'PY' | tee -a "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
def theirs(name):
    path = os.path.join(out, name)
    return json.load(open(path))[0]["avg_ts"] if os.path.exists(path) and os.path.getsize(path) else None
for quantize, weights, format in (("none", "bf16", "F16"), ("int8", "int8", "Q8_0")):
    ours = json.load(open(os.path.join(out, f"long-{quantize}.json")))["prefill_tokens_per_s"]
    line = f"  {weights:5} prefill {ours:.1f} tok/s"
    for who, name in (("llama.cpp", f"long-llama-{quantize}.json"), ("ik_llama.cpp", f"long-ik-{quantize}.json")):
        if (t := theirs(name)) is not None: line += f"; {who} {format} {t:.1f} ({ours / t:.2f}x)"
    print(line)
PY

say "== constrained decoding (qwen3 generate --json-schema, bf16): mask cost against the step, 1 and 16 streams"
schema='{"type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer", "minimum": 1900, "maximum": 2100}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["title", "year", "tags"]}'
for streams in 1 16; do
  $QWEN3 generate --model "$model" --prompt "Describe a film as JSON." --chat --no-thinking --max-tokens 64 --temperature 1 --seed 1 \
    --threads "$THREADS" --streams "$streams" --json-schema "$schema" --json >"$out/constrained-s$streams.json" 2>/dev/null
  python3 - "$out/constrained-s$streams.json" "$streams" <<'PY' | tee -a "$out/summary.txt"
import json, sys
d = json.load(open(sys.argv[1])); c = d["constraint"]
print(f"  {sys.argv[2]:>2} streams: mask per token p50 {c['mask_us_p50']} us, p99 {c['mask_us_p99']} us (max {c['mask_us_max']}, a state's first mask), "
      f"step p50 {c['step_ms_p50']} ms, masks {c['mask_share_of_step']:.2%} of step time; {d['finish_reason']} after {len(d['tokens'])} tokens, JSON valid: {bool(json.loads(d['text']))}")
PY
done
[[ "${SKIP_SERVING:-0}" == 1 ]] && { say "results in $out"; exit 0; }

scrape() { # file, ports...: the /metrics of every silo given, one after another
  local file=$1 port
  shift
  for port in "$@"; do curl -s "http://127.0.0.1:$port/metrics"; done >"$file"
}

load() { # name, grpc port, the metrics ports of every silo (comma-separated), round ("" or "-rN"), concurrencies...
  local name=$1 grpc=$2 round=$4
  local -a ports
  IFS=, read -r -a ports <<<"$3"
  shift 4
  for c in "$@"; do
    local n=$(( c == 1 ? 8 : c * 3 )) run="$name-c$c$round"
    local before="$out/$run.before.prom" after="$out/$run.after.prom"
    echo "  $name: $n requests at concurrency $c..." >&2
    # One wave at the same concurrency first, not measured (nor counted below): a fresh server's first requests pay
    # for JIT compilation, grain activations and (three processes) expert groups loading on their first call.
    $QWEN3 bench --endpoint "http://127.0.0.1:$grpc" --concurrency "$c" --requests $(( c > 2 ? c : 2 )) \
      --prompt-tokens 128 --max-tokens 64 >/dev/null 2>&1
    scrape "$before" "${ports[@]}"
    $QWEN3 bench --endpoint "http://127.0.0.1:$grpc" --concurrency "$c" --requests "$n" \
      --prompt-tokens 128 --max-tokens 64 --output "$out/$run.json" >"$out/$run.txt" 2>/dev/null
    scrape "$after" "${ports[@]}"
    # Per step: grain calls; per expert-group call: its round trip at the stage and its computing on the experts' silo,
    # as means and as medians (from the histograms' buckets). The means hold every call, and a 128-token prefill's call
    # computes for 10-30 ms on the AVX2 VM against 0.2-0.7 ms for a decode step's: they are mostly prefill there. The
    # medians are a decode step's call (nearly every call is one).
    python3 - "$name$round" "$c" "$out/$run.json" "$before" "$after" <<'PY' | tee -a "$out/summary.txt"
import json, re, sys
name, c, result, before, after = sys.argv[1:]
def scrape(path):
    sums, buckets = {}, {}
    for line in open(path):
        m = re.match(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
        if not m or line.startswith('#'): continue
        metric, labels, value = m.group(1), m.group(2) or '', float(m.group(3))
        sums[metric] = sums.get(metric, 0) + value
        le = re.search(r'le="([^"]+)"', labels)
        if metric.endswith('_bucket') and le:
            bounds = buckets.setdefault(metric, {})
            bounds[float(le.group(1))] = bounds.get(float(le.group(1)), 0) + value
    return sums, buckets
(s0, b0), (s1, b1) = scrape(before), scrape(after)
delta = lambda m: s1.get(m, 0) - s0.get(m, 0)
per = lambda a, b: a / b if b > 0 else 0
def median(histogram): # the 50th percentile of the calls in between, interpolated in its bucket, in ms
    counts = sorted((le, n - b0.get(histogram + '_bucket', {}).get(le, 0)) for le, n in b1.get(histogram + '_bucket', {}).items())
    if not counts or counts[-1][1] <= 0: return 0
    half, low, below = counts[-1][1] / 2, 0.0, 0
    for le, n in counts:
        if n >= half:
            return 1000 * (low if le == float('inf') else low + (le - low) * (half - below) / max(n - below, 1))
        low, below = le, n
steps = delta('qwen3_step_duration_seconds_count')
call, compute = 'qwen3_expert_call_duration_seconds', 'qwen3_expert_group_compute_duration_seconds'
served = json.load(open(result))
print(f"{name} c={c:<2} output tok/s {served['output_tokens_per_second']} (TTFT p50 {served['ttft_ms']['p50']} ms, inter-token p50 "
      f"{served['itl_ms']['p50']} ms)  steps={steps:.0f} "
      f"stage_calls/step={per(delta('qwen3_grain_calls_stage_total'), steps):.2f} expert_calls/step={per(delta('qwen3_grain_calls_experts_total'), steps):.2f} "
      f"expert_call mean {1000 * per(delta(call + '_sum'), delta(call + '_count')):.3f}ms (computing {1000 * per(delta(compute + '_sum'), delta(compute + '_count')):.3f}), "
      f"median {median(call):.3f}ms (computing {median(compute):.3f})")
PY
  done
}

wait_ready() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.5; done; return 1; }

# All three deployments up at once (an idle one costs next to nothing), so that their one-stream runs can take turns, as the
# generate rounds above do: on this kind of machine the speed moves between minutes, and only turns compare.
say "== embedded default (qwen3 serve, bf16) and three processes (silos/local/run.sh, bf16: four expert groups, and two slices)"
$QWEN3 serve --model "$model" --grpc-port 50151 --http-port 8100 --threads "$THREADS" >"$out/serve.log" 2>&1 &
serve=$!
MODEL_DIR="$model" QWEN3="$QWEN3" GRPC_PORT=50251 HTTP_PORT=8200 SILO_PORT=11211 GATEWAY_PORT=30200 REDIS_PORT=6490 \
  LOG_DIR="$out/local-logs" "$root/silos/local/run.sh" >"$out/local.log" 2>&1 &
cluster=$!
# The same three processes with the experts cut into two slices (Qwen3:Model:ExpertSlices) instead of four groups:
# silo B holds every expert's first half of the intermediate rows, silo C the second, so at one stream each computes
# half of every token's experts, where whole groups leave one silo with more of them than the other most steps.
Qwen3__Model__ExpertGroups=1 Qwen3__Model__ExpertSlices=2 MODEL_DIR="$model" QWEN3="$QWEN3" GRPC_PORT=50351 HTTP_PORT=8300 \
  SILO_PORT=11311 GATEWAY_PORT=30300 REDIS_PORT=6590 METRICS_PORT=9474 HEALTH_PORT=9574 \
  LOG_DIR="$out/sliced-logs" "$root/silos/local/run.sh" >"$out/sliced.log" 2>&1 &
sliced=$!
trap 'kill $serve $cluster $sliced 2>/dev/null || true' EXIT
wait_ready 8100
wait_ready 8200
wait_ready 8300
# Silo A serves /metrics on HTTP_PORT, silos B and C (the expert groups) at METRICS_PORT + 1 and + 2 (silos/local/env.sh).
for r in $(seq "$ROUNDS"); do
  echo "  one stream, round $r of $ROUNDS" >&2
  load embedded 50151 8100 "-r$r" 1
  load three-process 50251 8200,9465,9466 "-r$r" 1
  load three-process-sliced 50351 8300,9475,9476 "-r$r" 1
done
load embedded 50151 8100 "" 4 16
load three-process 50251 8200,9465,9466 "" 16
kill -TERM $serve $cluster $sliced; wait $serve $cluster $sliced || true
python3 - "$out" "$ROUNDS" "$model/config.json" "$here" <<'PY' | tee -a "$out/summary.txt"
import json, sys, os, statistics
tps = lambda n: json.load(open(os.path.join(sys.argv[1], n + ".json")))["output_tokens_per_second"]
rounds = range(1, int(sys.argv[2]) + 1)
e = [tps(f"embedded-c1-r{r}") for r in rounds]
c = [tps(f"three-process-c1-r{r}") for r in rounds]
s = [tps(f"three-process-sliced-c1-r{r}") for r in rounds]
ratios = [b / a for a, b in zip(e, c)]
sliced_ratios = [b / a for a, b in zip(e, s)]
e1, c1, s1 = statistics.median(e), statistics.median(c), statistics.median(s)
print("one stream, by round (embedded / three processes / three processes, experts in two slices):",
      ", ".join(f"{a:.1f}/{b:.1f}/{d:.1f}" for a, b, d in zip(e, c, s)))
print(f"embedded c=1 median {e1:.1f}, three processes c=1 median {c1:.1f}: {c1 / e1:.2f}x "
      f"(by round {min(ratios):.2f}-{max(ratios):.2f}x, median {statistics.median(ratios):.2f}x)")
print(f"three processes with the experts in two slices c=1 median {s1:.1f}: {s1 / e1:.2f}x "
      f"(by round {min(sliced_ratios):.2f}-{max(sliced_ratios):.2f}x, median {statistics.median(sliced_ratios):.2f}x)")
print(f"embedded at 16 streams / 1 stream (median): {tps('embedded-c16') / e1:.2f}x; "
      f"three processes at 16 / embedded at 16: {tps('three-process-c16') / tps('embedded-c16'):.2f}x")
# The arithmetic a served request costs (128 prompt tokens, 64 output; the LM head for the output tokens only),
# counted from the model's config, against the machine's float32 multiply-add peak (qwen3 kernels): at 16 streams
# the batch makes the weights cheap, and what bounds the aggregate is how fast the cores can compute.
sys.path.insert(0, sys.argv[4])
from flops import forward_flops
peak = json.load(open(os.path.join(sys.argv[1], "kernels.json"))).get("peak_gflops", 0)
prompt, output = 128, 64
# The prompt and the 63 tokens decoded after it go through every layer; the LM head makes the 64 output tokens.
per_token = forward_flops(json.load(open(sys.argv[3])), 1, prompt + output - 1, output) / output / 1e9
if peak:
    need = 6 * e1 * per_token
    print(f"a served request computes {per_token:.3f} GFLOP an output token; embedded at 16 streams {tps('embedded-c16') * per_token:.1f} GFLOP/s "
          f"({tps('embedded-c16') * per_token / peak:.0%} of the {peak} GFLOP/s multiply-add peak); 6x one stream would compute "
          f"{need:.1f} GFLOP/s ({need / peak:.2f}x the peak)")
PY
say "results in $out"
