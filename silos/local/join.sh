#!/usr/bin/env bash
# Starts one more silo that joins the cluster silos/local/run.sh started, in the foreground, until SIGTERM or
# Ctrl-C, which make it leave the cluster gracefully (its grains are placed again on the silos left).
#
#   silos/local/join.sh NAME [ROLES]      e.g. silos/local/join.sh silo-d        (ROLES: experts by default)
#                                              silos/local/join.sh silo-e stage,experts
#
# Takes the same environment variables as run.sh (MODEL_DIR, CLUSTERING, the ports, QWEN3, LOG_DIR,
# EXPERT_THREADS) and must be given the same values, so that it finds the same membership store and model.
# It listens on the first free silo and gateway ports above run.sh's three.
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 || $1 == -* ]]; then
  echo "usage: $0 NAME [ROLES]   (ROLES: a comma-separated list of gateway, stage, experts; default experts)" >&2
  exit 2
fi
name=$1
IFS=, read -r -a roles <<<"${2:-experts}"
source "$(cd "$(dirname "$0")" && pwd)/env.sh"

clustering=${CLUSTERING:-auto}
if [[ "$clustering" == auto ]]; then
  # run.sh's choice: Redis when it could start one (then it answers on REDIS_PORT), localhost otherwise.
  if command -v redis-cli >/dev/null && redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then clustering=redis; else clustering=localhost; fi
fi
if ! port_in_use "$SILO_PORT" && [[ $clustering == localhost ]]; then
  echo "no cluster answers on silo port $SILO_PORT: start silos/local/run.sh first (with the same ports)" >&2
  exit 1
fi
read -r -a membership <<<"$(membership_settings "$clustering")"

gateway=0; [[ " ${roles[*]} " == *" gateway "* ]] && gateway=1
taken() { # offset: is a port this silo would listen on in use?
  port_in_use $((SILO_PORT + $1)) || port_in_use $((GATEWAY_PORT + $1)) || port_in_use $((METRICS_PORT + $1)) || port_in_use $((HEALTH_PORT + $1)) ||
    { [[ $gateway == 1 ]] && { port_in_use $((GRPC_PORT + $1)) || port_in_use $((HTTP_PORT + $1)); }; }
}
offset=3
while taken "$offset"; do offset=$((offset + 1)); done
settings=("${membership[@]}" Qwen3__Silo__Name="$name" Qwen3__Silo__Threads="$EXPERT_THREADS"
          Qwen3__Clustering__SiloPort=$((SILO_PORT + offset)) Qwen3__Clustering__GatewayPort=$((GATEWAY_PORT + offset))
          Qwen3__Telemetry__MetricsPort=$((METRICS_PORT + offset)) Qwen3__Telemetry__HealthPort=$((HEALTH_PORT + offset))
          Qwen3__Clustering__PrimarySiloPort="$SILO_PORT")
for i in "${!roles[@]}"; do settings+=("Qwen3__Silo__Roles__$i=${roles[$i]}"); done
endpoints=""
if [[ $gateway == 1 ]]; then
  # A gateway of its own: gRPC and HTTP at the same offset above run.sh's ports.
  settings+=(Qwen3__Gateway__GrpcPort=$((GRPC_PORT + offset)) Qwen3__Gateway__HttpPort=$((HTTP_PORT + offset)))
  endpoints=", gRPC 127.0.0.1:$((GRPC_PORT + offset)), HTTP http://127.0.0.1:$((HTTP_PORT + offset))"
fi
echo "$name ($(IFS=,; echo "${roles[*]}")) joining the cluster ($clustering membership) on silo port $((SILO_PORT + offset))$endpoints" >&2
exec env "${settings[@]}" $QWEN3 serve --config "$here/silo-join.json" --model "$MODEL_DIR"
