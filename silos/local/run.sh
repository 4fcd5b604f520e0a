#!/usr/bin/env bash
# A three-process cluster on this machine: silo A (gateway + stages) and silos B and C (half of the expert
# groups each), on loopback. Waits until the cluster serves, then runs until Ctrl-C, which stops every process.
#
#   MODEL_DIR=/path/to/checkpoint silos/local/run.sh
#
# MODEL_DIR     checkpoint to serve (default: the demo model, made on first use)
# CLUSTERING    redis | localhost | auto (default auto: Redis membership when redis-server is installed)
# GRPC_PORT, HTTP_PORT, SILO_PORT, GATEWAY_PORT, REDIS_PORT   first ports to use (50051, 8000, 11111, 30000, 6390)
# QWEN3         command that runs the qwen3 tool (default: builds tools/Qwen3Cluster.Cli in Release and runs it)
# LOG_DIR       where each process writes its log (default: a new temporary folder)
# EXPERT_THREADS  kernel threads of silos B and C, which compute at the same time on this one machine (default:
#               half the cores each; silo A, which waits while they run, takes every core)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

GRPC_PORT=${GRPC_PORT:-50051}
HTTP_PORT=${HTTP_PORT:-8000}
SILO_PORT=${SILO_PORT:-11111}
GATEWAY_PORT=${GATEWAY_PORT:-30000}
REDIS_PORT=${REDIS_PORT:-6390}
LOG_DIR=${LOG_DIR:-$(mktemp -d -t qwen3-local-XXXXXX)}
mkdir -p "$LOG_DIR"

if [[ -z "${QWEN3:-}" ]]; then
  echo "building the qwen3 tool..." >&2
  if ! out=$(dotnet build "$root/tools/Qwen3Cluster.Cli" -c Release -nologo 2>&1); then echo "$out" >&2; exit 1; fi
  QWEN3="dotnet $root/tools/Qwen3Cluster.Cli/bin/Release/net10.0/qwen3.dll"
fi
if [[ -z "${MODEL_DIR:-}" ]]; then MODEL_DIR=$($QWEN3 demo-model); fi

clustering=${CLUSTERING:-auto}
if [[ "$clustering" == auto ]]; then
  if command -v redis-server >/dev/null; then clustering=redis; else clustering=localhost; fi
fi

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping the cluster..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "${redis_pid:-}" ]]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  echo "stopped; logs in $LOG_DIR" >&2
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

membership=()
if [[ "$clustering" == redis ]]; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$LOG_DIR/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  membership=(Qwen3__Clustering__Provider=Redis "Qwen3__Clustering__ConnectionString=127.0.0.1:$REDIS_PORT"
              Qwen3__Clustering__ClusterId="local-$REDIS_PORT")
fi

cores=$(nproc)
EXPERT_THREADS=${EXPERT_THREADS:-$(( cores > 1 ? cores / 2 : 1 ))}

start() { # name, port offset, kernel threads (0: one per core)
  local name=$1 offset=$2 threads=$3
  local settings=("${membership[@]}" Qwen3__Clustering__SiloPort=$((SILO_PORT + offset)) Qwen3__Silo__Threads="$threads"
                  Qwen3__Clustering__GatewayPort=$((GATEWAY_PORT + offset))
                  Qwen3__Gateway__GrpcPort="$GRPC_PORT" Qwen3__Gateway__HttpPort="$HTTP_PORT")
  if [[ $offset != 0 ]]; then settings+=(Qwen3__Clustering__PrimarySiloPort="$SILO_PORT"); fi
  env "${settings[@]}" $QWEN3 serve --config "$here/$name.json" --model "$MODEL_DIR" >"$LOG_DIR/$name.log" 2>&1 &
  pids+=($!)
}
start silo-a 0 0
start silo-b 1 "$EXPERT_THREADS"
start silo-c 2 "$EXPERT_THREADS"

echo "waiting for the cluster ($clustering membership, model $MODEL_DIR)..." >&2
for _ in $(seq 600); do
  if curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null; then
    echo "cluster serving: gRPC 127.0.0.1:$GRPC_PORT, HTTP http://127.0.0.1:$HTTP_PORT (logs in $LOG_DIR)"
    wait -n "${pids[@]}" || true
    echo "a silo exited; see $LOG_DIR" >&2
    exit 1
  fi
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "a silo failed to start; see $LOG_DIR" >&2; tail -n 20 "$LOG_DIR"/silo-*.log >&2; exit 1; fi
  done
  sleep 0.5
done
echo "the cluster did not become ready in 300 s; see $LOG_DIR" >&2
exit 1
