#!/usr/bin/env bash
# Memory of parallel repository downloads: `omadm serve` (embedded store, directory content engine) on loopback,
# one item of SIZE_MIB published through the operator API, then one download alone (the baseline) and PARALLEL
# downloads at once, each by curl to /dev/null. Samples the server's resident memory (VmRSS) every 50 ms and
# prints idle, peak and peak-above-idle for both runs, the ratio between them, and whether the peak above idle
# stays under the target (200 MB for 200 downloads of 64 MiB). Every download must arrive whole.
#
#   load-tests/repository-downloads.sh [--parallel N] [--size-mib N] [--debug]
set -euo pipefail

parallel=200
size_mib=64
profile=release
while [[ $# -gt 0 ]]; do
  case "$1" in
    --parallel) parallel="$2"; shift 2 ;;
    --size-mib) size_mib="$2"; shift 2 ;;
    --debug) profile=debug; shift ;;
    *) echo "usage: $0 [--parallel N] [--size-mib N] [--debug]" >&2; exit 2 ;;
  esac
done
target_mb=200

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo_flags=()
[[ "$profile" == release ]] && cargo_flags+=(--release)
cargo build "${cargo_flags[@]}" -p omadm --manifest-path "$root/Cargo.toml" >&2
omadm="$target/$profile/omadm"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
token="load-test-token-$RANDOM$RANDOM"
RUST_LOG=warn "$omadm" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --ops-listen none \
  --admin-token "$token" --max-repository-bytes $(((size_mib + 1) << 20)) >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }

head -c $((size_mib << 20)) /dev/urandom >"$work/item.bin"
curl -fs -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/octet-stream' \
  --data-binary @"$work/item.bin" "$base/api/v1/repository/fw/load.bin" >/dev/null
expected=$((size_mib << 20))

# Resident memory while `count` downloads run at once: "idle_kb peak_kb failed seconds".
measure() {
  local count=$1 idle peak failed start
  sleep 1
  idle=$(rss_kb)
  peak=$idle
  : >"$work/sizes"
  start=$(date +%s%N)
  for _ in $(seq 1 "$count"); do
    curl -s -o /dev/null -w '%{size_download}\n' "$base/repo/fw/load.bin" >>"$work/sizes" &
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
    local now
    now=$(rss_kb)
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.05
  done
  wait
  failed=$(grep -cvx "$expected" "$work/sizes" || true)
  echo "$idle $peak $failed $((($(date +%s%N) - start) / 1000000))"
}

read -r base_idle base_peak base_failed base_seconds < <(measure 1)
read -r idle peak failed seconds < <(measure "$parallel")
base_above=$(((base_peak - base_idle) / 1024))
above=$(((peak - idle) / 1024))
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); profile: $profile"
echo "item: ${size_mib} MiB"
printf 'baseline, 1 download:   idle %d MB, peak %d MB, above idle %d MB, %d ms, %d incomplete\n' \
  $((base_idle / 1024)) $((base_peak / 1024)) "$base_above" "$base_seconds" "$base_failed"
printf '%d parallel downloads: idle %d MB, peak %d MB, above idle %d MB, %d ms, %d incomplete\n' \
  "$parallel" $((idle / 1024)) $((peak / 1024)) "$above" "$seconds" "$failed"
awk -v above="$above" -v base="$base_above" -v n="$parallel" -v kb="$((peak - idle))" 'BEGIN {
  printf "ratio of memory above idle, %d downloads to 1: %.1f; per download: %.0f KiB\n", n, above / (base > 0 ? base : 1), kb / n }'
if [ "$failed" -ne 0 ] || [ "$base_failed" -ne 0 ]; then
  echo "FAIL: downloads did not arrive whole" >&2
  exit 1
fi
if [ "$parallel" -eq 200 ] && [ "$size_mib" -eq 64 ]; then
  if [ "$above" -lt "$target_mb" ]; then echo "target: under $target_mb MB above idle: met"; else
    echo "target: under $target_mb MB above idle: MISSED" >&2
    exit 1
  fi
fi
