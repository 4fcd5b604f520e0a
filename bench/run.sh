#!/usr/bin/env bash
# Benchmarks on bench-moe (a scaled-down Qwen3-30B-A3B: 8 layers, hidden 1024, 32 experts, top-4), measured in
# one run so the ratios are comparable on a shared machine:
#   1. qwen3 generate, one stream, 128 prompt tokens, 64 new tokens (the single-process engine);
#   2. the embedded default (qwen3 serve) under qwen3 bench at concurrency 1, 4 and 16;
#   3. the three-process cluster (silos/local/run.sh) under the same load;
# with grain calls per decode step read from the cluster's own counters. Results go to bench/results/.
#
#   bench/run.sh [MODEL_DIR]     (default: makes bench-moe under ~/.cache/qwen3cluster/bench-moe)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
THREADS=${THREADS:-2}
out="$here/results/$(date -u +%Y-%m-%dT%H%M)"
mkdir -p "$out"

dotnet build "$root/tools/Qwen3Cluster.Cli" -c Release -nologo -v quiet >/dev/null
QWEN3="dotnet $root/tools/Qwen3Cluster.Cli/bin/Release/net10.0/qwen3.dll"
model=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/qwen3cluster/bench-moe}
[[ -f "$model/config.json" ]] || $QWEN3 make-model --preset bench-moe --out "$model"

prompt=$(python3 -c "print(','.join(str(1000 + i * 37) for i in range(128)))" 2>/dev/null || seq -s, 1000 37 5699)
echo "== qwen3 generate (single process, $THREADS threads)" | tee "$out/summary.txt"
/usr/bin/time -v $QWEN3 generate --model "$model" --prompt-ids "$prompt" --max-tokens 64 --temperature 0 --threads "$THREADS" --json \
  >"$out/generate.json" 2>"$out/generate.time"
grep -o '"prefill_tokens_per_s":[0-9.]*\|"decode_tokens_per_s":[0-9.]*' "$out/generate.json" | tee -a "$out/summary.txt"
grep -E "loaded|Maximum resident|Elapsed" "$out/generate.time" | tee -a "$out/summary.txt"

metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"(\\{|$)" { s += $2 } END { print s + 0 }'; }

load() { # name, grpc port, http port
  local name=$1 grpc=$2 http=$3
  for c in 1 4 16; do
    local n=$(( c == 1 ? 4 : c * 2 ))
    local steps0 stage0 experts0
    steps0=$(metric "$http" qwen3_step_duration_seconds_count); stage0=$(metric "$http" qwen3_grain_calls_stage_total)
    experts0=$(metric "$http" qwen3_grain_calls_experts_total)
    $QWEN3 bench --endpoint "http://127.0.0.1:$grpc" --concurrency "$c" --requests "$n" --prompt-tokens 128 --max-tokens 64 \
      --output "$out/$name-c$c.json" >"$out/$name-c$c.txt" 2>/dev/null
    local steps stage experts
    steps=$(( $(metric "$http" qwen3_step_duration_seconds_count) - steps0 ))
    stage=$(( $(metric "$http" qwen3_grain_calls_stage_total) - stage0 ))
    experts=$(( $(metric "$http" qwen3_grain_calls_experts_total) - experts0 ))
    printf '%s c=%-2s %s  steps=%s stage_calls/step=%s expert_calls/step=%s\n' "$name" "$c" \
      "$(grep -o '"output_tokens_per_second": [0-9.]*' "$out/$name-c$c.json")" "$steps" \
      "$(awk -v a="$stage" -v b="$steps" 'BEGIN { printf "%.2f", b ? a / b : 0 }')" \
      "$(awk -v a="$experts" -v b="$steps" 'BEGIN { printf "%.2f", b ? a / b : 0 }')" | tee -a "$out/summary.txt"
  done
}

wait_ready() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.5; done; return 1; }

echo "== embedded default (qwen3 serve, expert groups 2)" | tee -a "$out/summary.txt"
$QWEN3 serve --model "$model" --grpc-port 50151 --http-port 8100 --threads "$THREADS" --expert-groups 2 \
  >"$out/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null || true' EXIT
wait_ready 8100
load embedded 50151 8100
kill -TERM $serve; wait $serve || true

echo "== three processes (silos/local/run.sh)" | tee -a "$out/summary.txt"
MODEL_DIR="$model" QWEN3="$QWEN3" GRPC_PORT=50251 HTTP_PORT=8200 SILO_PORT=11211 GATEWAY_PORT=30200 REDIS_PORT=6490 \
  LOG_DIR="$out/local-logs" "$root/silos/local/run.sh" >"$out/local.log" 2>&1 &
cluster=$!
trap 'kill $cluster 2>/dev/null || true' EXIT
wait_ready 8200
load three-process 50251 8200
kill -TERM $cluster; wait $cluster || true
echo "results in $out"
