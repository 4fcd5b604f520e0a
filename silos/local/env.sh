# Shared by run.sh and join.sh (sourced): ports, the qwen3 command, the model and the membership store, from the
# same environment variables, so that a silo started by join.sh finds the cluster run.sh started.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

GRPC_PORT=${GRPC_PORT:-50051}
HTTP_PORT=${HTTP_PORT:-8000}
SILO_PORT=${SILO_PORT:-11111}
GATEWAY_PORT=${GATEWAY_PORT:-30000}
REDIS_PORT=${REDIS_PORT:-6390}
# Silos without the gateway role serve /metrics at METRICS_PORT + their port offset (the gateway on HTTP_PORT).
METRICS_PORT=${METRICS_PORT:-9464}
# ... and gRPC health (grpc.health.v1, HTTP/2 cleartext) at HEALTH_PORT + their offset (the gateway on GRPC_PORT).
HEALTH_PORT=${HEALTH_PORT:-9564}
LOG_DIR=${LOG_DIR:-$(mktemp -d -t qwen3-local-XXXXXX)}
mkdir -p "$LOG_DIR"

if [[ -z "${QWEN3:-}" ]]; then
  echo "building the qwen3 tool..." >&2
  if ! out=$(dotnet build "$root/tools/Qwen3Cluster.Cli" -c Release -nologo 2>&1); then echo "$out" >&2; exit 1; fi
  QWEN3="dotnet $root/tools/Qwen3Cluster.Cli/bin/Release/net10.0/qwen3.dll"
fi
if [[ -z "${MODEL_DIR:-}" ]]; then MODEL_DIR=$($QWEN3 demo-model); fi

cores=$(nproc)
EXPERT_THREADS=${EXPERT_THREADS:-$(( cores > 1 ? cores / 2 : 1 ))}

# membership: the settings that point a silo at the cluster's membership store (Redis, or PostgreSQL at
# POSTGRES_CONNECTION), empty for localhost clustering, where every silo but the primary names the primary's silo port.
membership_settings() { # clustering
  if [[ $1 == redis ]]; then
    echo Qwen3__Clustering__Provider=Redis "Qwen3__Clustering__ConnectionString=127.0.0.1:$REDIS_PORT" \
         "Qwen3__Clustering__ClusterId=local-$REDIS_PORT"
  elif [[ $1 == postgres ]]; then
    echo Qwen3__Clustering__Provider=AdoNet "Qwen3__Clustering__ConnectionString=$POSTGRES_CONNECTION" \
         "Qwen3__Clustering__ClusterId=local-$SILO_PORT"
  fi
}

# Is something listening on this loopback port?
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
