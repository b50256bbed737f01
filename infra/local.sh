#!/usr/bin/env bash
# The real local stack for a demo or a maintainer, all on 127.0.0.1:
#   a Prefect server (API + UI), a Ray head (GCS + dashboard, which serves the Ray Jobs API),
#   and, with --s3, an S3 endpoint (moto's server).
#
#   infra/local.sh start [--dir DIR] [--s3]   start everything; writes DIR/env to source
#   infra/local.sh stop  [--dir DIR]          stop what start started
#   infra/local.sh status [--dir DIR]         show what is up
#
# Ports: PREFECT_PORT (4200), RAY_PORT (6380), RAY_DASHBOARD_PORT (8265), S3_PORT (9000).
# DIR defaults to .local-stack. Then: `source DIR/env; stt-corpus flows serve --config build.yaml`
# and open http://127.0.0.1:$PREFECT_PORT for the Prefect UI.
set -euo pipefail

cmd=${1:-}; shift || true
dir=.local-stack; s3=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --s3) s3=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
[ -x "$bin/python" ] || { echo "no $bin/python: run 'make setup' first" >&2; exit 1; }
export PATH="$bin:$PATH"
PREFECT_PORT=${PREFECT_PORT:-4200}; RAY_PORT=${RAY_PORT:-6380}; RAY_DASHBOARD_PORT=${RAY_DASHBOARD_PORT:-8265}
S3_PORT=${S3_PORT:-9000}; NUM_CPUS=${NUM_CPUS:-$(nproc)}

answers() {  # any HTTP answer (a 401 from Ray's token auth included) means the server is up
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" != "000" ]
}

free_port() {  # Ray's agents default to fixed ports (52365 ...): another Ray on the machine may hold them
  python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {  # url, what, seconds[, pid file of the server: its death ends the wait]
  for _ in $(seq 1 "$3"); do
    if [ -n "${4:-}" ] && ! kill -0 "$(cat "$dir/$4")" 2>/dev/null; then
      # e.g. its port was taken: then whatever answers there is not this server
      echo "$2 exited before it answered at $1: $(tail -n 2 "$dir/${4%.pid}.log" 2>/dev/null)" >&2; return 1
    fi
    answers "$1" && return 0; sleep 1
  done
  echo "$2 did not come up at $1 (logs in $dir)" >&2; return 1
}

start() {
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  echo "prefect server on http://127.0.0.1:$PREFECT_PORT ..."
  PREFECT_HOME="$dir/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_API_URL= \
    PREFECT_SERVER_UI_API_URL="http://127.0.0.1:$PREFECT_PORT/api" \
    setsid nohup prefect server start --host 127.0.0.1 --port "$PREFECT_PORT" >"$dir/prefect.log" 2>&1 &
  echo $! >"$dir/prefect.pid"
  if [ "$s3" = 1 ]; then
    echo "S3 endpoint (moto) on http://127.0.0.1:$S3_PORT ..."
    setsid nohup moto_server -H 127.0.0.1 -p "$S3_PORT" >"$dir/s3.log" 2>&1 &
    echo $! >"$dir/s3.pid"
  fi
  # the servers on the given ports answer before Ray starts: Ray's agents take free ports of their
  # own, and one of them could otherwise be a port given here that no server had bound yet
  wait_http "http://127.0.0.1:$PREFECT_PORT/api/health" "prefect server" 120 prefect.pid
  if [ "$s3" = 1 ]; then wait_http "http://127.0.0.1:$S3_PORT/moto-api/" "S3 endpoint" 60 s3.pid; fi
  echo "ray head on 127.0.0.1:$RAY_PORT, dashboard http://127.0.0.1:$RAY_DASHBOARD_PORT ..."
  # token auth, always: the token lives in ~/.ray/auth_token and clients with RAY_AUTH_MODE=token send it
  export RAY_AUTH_MODE=token
  ray get-auth-token --generate >/dev/null
  # its own temp dir (short: Ray's socket paths must fit 107 bytes), so `stop` stops this Ray alone;
  # loopback only: without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray turns 127.0.0.1 into the
  # routable address and listens everywhere
  raytmp=$(mktemp -d /tmp/stt-ray.XXXXXX); echo "$raytmp" >"$dir/ray.tmpdir"
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --node-ip-address 127.0.0.1 --port "$RAY_PORT" --include-dashboard true \
    --dashboard-host 127.0.0.1 --dashboard-port "$RAY_DASHBOARD_PORT" --num-cpus "$NUM_CPUS" \
    --temp-dir "$raytmp" --disable-usage-stats \
    --dashboard-agent-listen-port "$(free_port)" --dashboard-agent-grpc-port "$(free_port)" \
    --metrics-export-port "$(free_port)" --runtime-env-agent-port "$(free_port)" \
    --ray-client-server-port "$(free_port)" >"$dir/ray.log" 2>&1 || { cat "$dir/ray.log" >&2; exit 1; }
  wait_http "http://127.0.0.1:$RAY_DASHBOARD_PORT/api/version" "ray dashboard" 60
  {
    echo "export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api"
    echo "export RAY_ADDRESS=127.0.0.1:$RAY_PORT"
    echo "export RAY_DASHBOARD_URL=http://127.0.0.1:$RAY_DASHBOARD_PORT"
    echo "export RAY_AUTH_MODE=token   # ray start turns token auth on; clients send ~/.ray/auth_token"
    if [ "$s3" = 1 ]; then
      echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT"
      echo "export AWS_ACCESS_KEY_ID=\${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=\${AWS_SECRET_ACCESS_KEY:-local}"
      echo "export AWS_DEFAULT_REGION=\${AWS_DEFAULT_REGION:-us-east-1} AWS_EC2_METADATA_DISABLED=true"
    fi
  } >"$dir/env"
  echo "up. source $dir/env  — Prefect UI: http://127.0.0.1:$PREFECT_PORT"
}

stop_pid() {
  local f="$dir/$1.pid"
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$f"
}

stop_ray() {  # this stack's Ray only: every process whose command line names its temp dir
  local f="$dir/ray.tmpdir"
  [ -f "$f" ] || return 0
  local raytmp; raytmp=$(cat "$f")
  case "$raytmp" in /tmp/stt-ray.*) ;; *) echo "refusing to stop Ray by the odd temp dir '$raytmp'" >&2; return 1 ;; esac
  pkill -TERM -f -- "$raytmp/" 2>/dev/null || true
  for _ in $(seq 1 20); do pgrep -f -- "$raytmp/" >/dev/null || break; sleep 0.5; done
  pkill -KILL -f -- "$raytmp/" 2>/dev/null || true
  rm -rf "$raytmp" "$f"
}

stop() {
  stop_pid prefect
  stop_pid s3
  stop_ray
  rm -f "$dir/env"
  echo "stopped"
}

status() {
  answers "http://127.0.0.1:$PREFECT_PORT/api/health" && echo "prefect: up" || echo "prefect: down"
  answers "http://127.0.0.1:$RAY_DASHBOARD_PORT/api/version" && echo "ray: up" || echo "ray: down"
  if [ -f "$dir/s3.pid" ]; then answers "http://127.0.0.1:$S3_PORT/moto-api/" && echo "s3: up" || echo "s3: down"; fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
