#!/usr/bin/env bash
# A three-process cluster on this machine: silo A (gateway + stages) and silos B and C (half of the expert
# groups each), on loopback. Waits until the cluster serves, then supervises it until Ctrl-C, which stops every
# process: a silo that exits is started again (as Kubernetes restarts a pod), so killing one costs a pause, not
# the cluster. silos/local/join.sh adds more silos to it.
#
#   MODEL_DIR=/path/to/checkpoint silos/local/run.sh
#
# MODEL_DIR     checkpoint to serve (default: the demo model, made on first use)
# CLUSTERING    redis | postgres | localhost | auto (default auto: Redis membership when redis-server is installed)
# POSTGRES_CONNECTION  with CLUSTERING=postgres: an Npgsql connection string without spaces (e.g.
#               Host=127.0.0.1;Port=5432;Username=orleans;Password=...;Database=qwen3); the silos create Orleans'
#               tables there if missing, and keep membership and sessions in it
# GRPC_PORT, HTTP_PORT, SILO_PORT, GATEWAY_PORT, REDIS_PORT, METRICS_PORT   first ports to use (50051, 8000, 11111,
#               30000, 6390, 9464); silos B and C serve /metrics at METRICS_PORT + 1 and + 2, silo A on HTTP_PORT
# HEALTH_PORT   silos B and C serve grpc.health.v1 at HEALTH_PORT + 1 and + 2 (default 9564), silo A on GRPC_PORT
# QWEN3         command that runs the qwen3 tool (default: builds tools/Qwen3Cluster.Cli in Release and runs it)
# LOG_DIR       where each process writes its log (default: a new temporary folder)
# EXPERT_THREADS  kernel threads of silos B and C, which compute at the same time on this one machine (default:
#               half the cores each; silo A, which waits while they run, takes every core)
# RESTART       1 (default) starts a silo that exited again; 0 stops the cluster when one exits
# STOP_GRACE    seconds a silo has to stop on Ctrl-C before it is killed (default 25); silos B and C stop before A
# Qwen3__...    any setting, for every silo (over silo-*.json): e.g. Qwen3__Model__ExpertGroups=1 Qwen3__Model__ExpertSlices=2
#               cuts the experts into two slices, one on silo B and one on C, instead of four groups between them;
#               join.sh must be given the same, or its silo reads another cut of the experts under the same group number
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/env.sh"
RESTART=${RESTART:-1}

clustering=${CLUSTERING:-auto}
if [[ "$clustering" == auto ]]; then
  if command -v redis-server >/dev/null; then clustering=redis; else clustering=localhost; fi
fi

declare -A pid_of=() offset_of=() threads_of=() restarts_of=()
# stop_silos NAME...: asks the silos to stop (SIGTERM: each leaves the cluster gracefully), waits for them, and kills
# whichever still runs after STOP_GRACE seconds (default 25), so that stopping never hangs on one.
stop_silos() {
  local name waited=0
  for name; do kill -TERM "${pid_of[$name]}" 2>/dev/null || true; done
  while (( waited < ${STOP_GRACE:-25} * 4 )); do
    local running=0
    for name; do kill -0 "${pid_of[$name]}" 2>/dev/null && running=1; done
    (( running )) || break
    sleep 0.25
    waited=$(( waited + 1 ))
  done
  for name; do
    if kill -0 "${pid_of[$name]}" 2>/dev/null; then
      echo "$name did not stop in ${STOP_GRACE:-25} s; killing it" >&2
      kill -KILL "${pid_of[$name]}" 2>/dev/null || true
    fi
    wait "${pid_of[$name]}" 2>/dev/null || true
  done
}
stop() {
  trap - INT TERM EXIT
  echo "stopping the cluster..." >&2
  # Silo A last: on localhost clustering it hosts the membership table the others record their leaving in (stopped
  # together, they found it gone: "failed to update its status to Dead" in their logs).
  local others=() name
  for name in "${!pid_of[@]}"; do [[ $name == silo-a ]] || others+=("$name"); done
  if (( ${#others[@]} )); then stop_silos "${others[@]}"; fi
  if [[ -n "${pid_of[silo-a]:-}" ]]; then stop_silos silo-a; fi
  if [[ -n "${redis_pid:-}" ]]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  echo "stopped; logs in $LOG_DIR" >&2
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

if [[ "$clustering" == postgres && -z "${POSTGRES_CONNECTION:-}" ]]; then
  echo "CLUSTERING=postgres needs POSTGRES_CONNECTION (an Npgsql connection string)" >&2
  exit 2
fi
if [[ "$clustering" == redis ]]; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$LOG_DIR/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
read -r -a membership <<<"$(membership_settings "$clustering")"

start() { # name, port offset, kernel threads (0: one per core)
  local name=$1 offset=$2 threads=$3
  local settings=("${membership[@]}" Qwen3__Clustering__SiloPort=$((SILO_PORT + offset)) Qwen3__Silo__Threads="$threads"
                  Qwen3__Clustering__GatewayPort=$((GATEWAY_PORT + offset)) Qwen3__Telemetry__MetricsPort=$((METRICS_PORT + offset))
                  Qwen3__Telemetry__HealthPort=$((HEALTH_PORT + offset))
                  Qwen3__Gateway__GrpcPort="$GRPC_PORT" Qwen3__Gateway__HttpPort="$HTTP_PORT")
  if [[ $offset != 0 ]]; then settings+=(Qwen3__Clustering__PrimarySiloPort="$SILO_PORT"); fi
  env "${settings[@]}" $QWEN3 serve --config "$here/$name.json" --model "$MODEL_DIR" >>"$LOG_DIR/$name.log" 2>&1 &
  pid_of[$name]=$!
  offset_of[$name]=$offset
  threads_of[$name]=$threads
}
start silo-a 0 0
start silo-b 1 "$EXPERT_THREADS"
start silo-c 2 "$EXPERT_THREADS"

# Starts again whichever silo exited, after a pause that doubles while it keeps failing within a minute of its
# start (Kubernetes' crash-loop back-off, capped at 30 s). Polls rather than `wait -n`, which loses processes that
# exit together.
supervise() {
  declare -A started_at=()
  local name
  for name in "${!pid_of[@]}"; do started_at[$name]=$SECONDS; restarts_of[$name]=0; done
  while true; do
    sleep 0.25
    for name in "${!pid_of[@]}"; do
      kill -0 "${pid_of[$name]}" 2>/dev/null && continue
      local code=0
      wait "${pid_of[$name]}" 2>/dev/null || code=$?
      echo "$name exited ($code); see $LOG_DIR/$name.log" >&2
      if [[ $RESTART != 1 ]]; then exit 1; fi
      if (( SECONDS - started_at[$name] > 60 )); then restarts_of[$name]=0; fi
      local pause=$(( 1 << restarts_of[$name] )); (( pause > 30 )) && pause=30
      restarts_of[$name]=$(( restarts_of[$name] + 1 ))
      sleep "$pause"
      echo "restarting $name" >&2
      start "$name" "${offset_of[$name]}" "${threads_of[$name]}"
      started_at[$name]=$SECONDS
    done
  done
}

echo "waiting for the cluster ($clustering membership, model $MODEL_DIR)..." >&2
for _ in $(seq 600); do
  if curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null; then
    echo "cluster serving: gRPC 127.0.0.1:$GRPC_PORT, HTTP http://127.0.0.1:$HTTP_PORT (logs in $LOG_DIR)"
    supervise
  fi
  for name in "${!pid_of[@]}"; do
    if ! kill -0 "${pid_of[$name]}" 2>/dev/null; then echo "a silo failed to start; see $LOG_DIR" >&2; tail -n 20 "$LOG_DIR"/silo-*.log >&2; exit 1; fi
  done
  sleep 0.5
done
echo "the cluster did not become ready in 300 s; see $LOG_DIR" >&2
exit 1
