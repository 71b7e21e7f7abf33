#!/usr/bin/env bash
# Cluster scenario: a redis-server, a tansu broker and N `omadm gateway` nodes on loopback, a devsim fleet spread
# over every node (a node drawn per request, so packages are forwarded to the owners), and optionally one node
# SIGKILLed half-way. Prints devsim's JSON report (sessions, retries, failovers, latencies).
#
#   load-tests/cluster.sh [--devices N] [--nodes N] [--kill-one] [--release]
#
# Needs redis-server and tansu (OMADM_TANSU, ~/.cache/omadm-tools/tansu-0.6.0/bin/tansu, or PATH). Everything runs
# in a temp dir and is stopped on exit.
set -euo pipefail

devices=2000
nodes=3
kill_one=false
profile=debug
while [[ $# -gt 0 ]]; do
  case "$1" in
    --devices) devices="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --kill-one) kill_one=true; shift ;;
    --release) profile=release; shift ;;
    *) echo "usage: $0 [--devices N] [--nodes N] [--kill-one] [--release]" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo_flags=()
[[ "$profile" == release ]] && cargo_flags+=(--release)
cargo build "${cargo_flags[@]}" -p omadm -p omadm-devsim --manifest-path "$root/Cargo.toml" >&2
omadm="$target/$profile/omadm"
devsim="$target/$profile/omadm-devsim"
tansu="${OMADM_TANSU:-$HOME/.cache/omadm-tools/tansu-0.6.0/bin/tansu}"
[[ -x "$tansu" ]] || tansu="$(command -v tansu || true)"
[[ -n "$tansu" ]] || { echo "no tansu broker: set OMADM_TANSU or install it (see docs/kafka.md)" >&2; exit 2; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # URL or host:port, seconds
  local deadline=$((SECONDS + $2))
  until { [[ "$1" == http* ]] && curl -sf -o /dev/null "$1"; } || { [[ "$1" != http* ]] && (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }; do
    (( SECONDS < deadline )) || { echo "timed out waiting for $1" >&2; return 1; }
    sleep 0.2
  done
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
broker_port=$(free_port)
(cd "$work" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$broker_port" \
  --advertised-listener-url "tcp://127.0.0.1:$broker_port") >"$work/broker.log" 2>&1 &
pids+=($!)
wait_for "127.0.0.1:$redis_port" 20
wait_for "127.0.0.1:$broker_port" 30

token="load-test-token"
servers=()
node_pids=()
for i in $(seq 1 "$nodes"); do
  port=$(free_port)
  internal=$(free_port)
  ops=$(free_port)
  env -u OMADM_ADMIN_TOKEN RUST_LOG=warn "$omadm" gateway --listen "127.0.0.1:$port" --internal-listen "127.0.0.1:$internal" \
    --ops-listen "127.0.0.1:$ops" --store "redis://127.0.0.1:$redis_port" --bus "kafka://127.0.0.1:$broker_port" \
    --admin-token "$token" --content "$work/content" \
    --public-url "http://127.0.0.1:$port" --node-id "node-$i" --max-commands-per-package 1 >"$work/node-$i.log" 2>&1 &
  pids+=($!)
  node_pids+=($!)
  servers+=("http://127.0.0.1:$port")
done
for server in "${servers[@]}"; do wait_for "$server/readyz" 60; done
server_list="$(IFS=,; echo "${servers[*]}")"
echo "cluster: $nodes nodes ($server_list), redis :$redis_port, broker :$broker_port" >&2

"$devsim" --server "$server_list" --devices "$devices" --register --admin-token "$token" --sessions-per-device 0 \
  --duration 1 --no-notify >/dev/null
for i in $(seq 0 $((devices - 1))); do
  printf 'devsim-%06d\n' "$i"
done | xargs -P 8 -I{} curl -sf -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"commands": [["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"], ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//Mod"], ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//Man"]]}' \
  "${servers[0]}/api/v1/devices/{}/commands"

"$devsim" --server "$server_list" --random-server --devices "$devices" --concurrency 64 --no-notify \
  --report "$work/report.json" >/dev/null &
devsim_pid=$!
if $kill_one; then
  sleep "${KILL_AFTER_S:-5}"
  kill -9 "${node_pids[1]}"
  echo "node-2 killed (SIGKILL)" >&2
fi
status=0
wait "$devsim_pid" || status=$?
cat "$work/report.json"
exit "$status"
