#!/usr/bin/env bash
# Side-by-side throughput of stead and etcd 3.4 on this machine, with the same load
# generator (`stead bench`, which speaks the etcd v3 API) and the same durability (both fsync
# every commit).
#
#   bench/compare.sh [single|cluster|both]     (default: both)
#
# Needs etcd 3.4 on PATH (Debian: apt-get install etcd-server); installs nothing itself.
# Prints a table: workload, clients, stead req/s, etcd req/s, ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-both}
command -v etcd >/dev/null || { echo "etcd is not on PATH (Debian: apt-get install etcd-server)" >&2; exit 1; }
cargo build --release --quiet
stead=target/release/stead
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

declare -a pids=()
start_cluster() { # kind n
  local kind=$1 n=$2 initial="" i
  for ((i = 0; i < n; i++)); do initial+="${initial:+,}m$i=http://127.0.0.1:$((23800 + i))"; done
  pids=()
  for ((i = 0; i < n; i++)); do
    local args=(--name "m$i" --data-dir "$work/$kind-$n-m$i"
      --listen-client-urls "http://127.0.0.1:$((23790 + i))" --advertise-client-urls "http://127.0.0.1:$((23790 + i))"
      --listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))"
      --initial-cluster "$initial" --initial-cluster-state new)
    if [ "$kind" = stead ]; then "$stead" serve "${args[@]}" >"$work/$kind-$i.log" 2>&1 &
    else etcd "${args[@]}" >"$work/$kind-$i.log" 2>&1 & fi
    pids+=($!)
  done
  endpoints=""
  for ((i = 0; i < n; i++)); do endpoints+="${endpoints:+,}127.0.0.1:$((23790 + i))"; done
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=1s put __ready 1 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$kind did not become ready" >&2; exit 1
}
stop_cluster() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }

throughput() { # workload clients endpoints
  local total=$(( $2 == 1 ? 2000 : 20000 ))
  "$stead" bench "$1" --endpoints "$3" --clients "$2" --conns $(( $2 < 8 ? $2 : 8 )) \
    --total "$total" --key-space 10000 --json | sed -E 's/.*"throughput":([0-9.]+).*/\1/'
}

run() { # n
  local n=$1 kind w c
  declare -A result
  for kind in stead etcd; do
    start_cluster "$kind" "$n"
    for w in put range range-serializable txn-put; do
      for c in 1 16 256; do result[$kind,$w,$c]=$(throughput "$w" "$c" "$endpoints"); done
    done
    stop_cluster
  done
  printf '\n%s member(s)\n%-20s %8s %12s %12s %7s\n' "$n" workload clients stead etcd ratio
  for w in put range range-serializable txn-put; do
    for c in 1 16 256; do
      printf '%-20s %8s %12.0f %12.0f %7.2f\n' "$w" "$c" "${result[stead,$w,$c]}" "${result[etcd,$w,$c]}" \
        "$(awk -v a="${result[stead,$w,$c]}" -v b="${result[etcd,$w,$c]}" 'BEGIN { print (b > 0 ? a / b : 0) }')"
    done
  done
}

case "$mode" in
  single) run 1 ;;
  cluster) run 3 ;;
  both) run 1; run 3 ;;
  *) echo "usage: $0 [single|cluster|both]" >&2; exit 2 ;;
esac
