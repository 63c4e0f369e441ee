#!/usr/bin/env bash
# Side-by-side throughput of stead and etcd 3.4 on this machine, with the same load
# generator (`stead bench`, which speaks the etcd v3 API) and the same durability (both fsync
# every commit).
#
#   bench/compare.sh [single|cluster|footprint|resources|both]     (default: both)
#
# `single`/`cluster`: every KV workload at 1, 16 and 256 clients against 1 or 3 members;
# results go to bench/results/<members>.csv and bench/results/throughput.svg (a plot of
# throughput against clients, made by bench/plot.py).
# `footprint`: RSS and on-disk size after loading 100k (and, with FOOTPRINT_KEYS=1000000,
# 1M) keys of 256 B, cold start time, and recovery time after kill -9; the disk's fsync
# latency beside a single client's round trip and put latency (three rounds each for stead
# and etcd).
# `resources`: stead's REST API alone (etcd has none): apply throughput, and the fan-out of
# resource events to 1,000 watchers.
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
  # Each system starts on a quiet disk: dirty pages left by the build or by the system
  # before (gigabytes after a build) would otherwise be written back under its flushes.
  sync
  for ((i = 0; i < n; i++)); do initial+="${initial:+,}m$i=http://127.0.0.1:$((23800 + i))"; done
  pids=()
  for ((i = 0; i < n; i++)); do
    rm -rf "$work/$kind-$n-m$i"  # always a fresh member
    local args=(--name "m$i" --data-dir "$work/$kind-$n-m$i"
      --listen-client-urls "http://127.0.0.1:$((23790 + i))" --advertise-client-urls "http://127.0.0.1:$((23790 + i))"
      --listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))"
      --initial-cluster "$initial" --initial-cluster-state new)
    if [ "$kind" = stead ]; then "$stead" serve "${args[@]}" --listen-api-url "http://127.0.0.1:$((26440 + i))" >"$work/$kind-$i.log" 2>&1 &
    else etcd "${args[@]}" >"$work/$kind-$i.log" 2>&1 & fi
    pids+=($!)
  done
  endpoints=""
  for ((i = 0; i < n; i++)); do endpoints+="${endpoints:+,}127.0.0.1:$((23790 + i))"; done
  local ready=""
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=1s put __ready 1 >/dev/null 2>&1 && { ready=1; break; }
    sleep 0.2
  done
  [ -n "$ready" ] || { echo "$kind did not become ready" >&2; exit 1; }
  if ((n > 1)); then
    # One client talks to the first endpoint only: make that a follower in both systems, so
    # one-client figures compare like with like (at the leader, nothing is forwarded).
    local leader
    leader=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint status -w simple | awk -F', ' '$5 == "true" { print $1 }')
    [ -n "$leader" ] || { echo "$kind: no leader in endpoint status" >&2; exit 1; }
    endpoints="$(tr , '\n' <<<"$endpoints" | grep -vx "$leader" | paste -sd,),$leader"
  fi
}
stop_cluster() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }

workloads="put range range-serializable txn-put txn-mixed lease-keepalive"
mkdir -p bench/results

field() { # json name
  sed -E "s/.*\"$2\":([0-9.]+).*/\1/" <<<"$1"
}

throughput() { # workload clients endpoints
  # One client runs for a fixed time: a fixed count of its fast requests (a single member's
  # reads) would be over in a fraction of a second, too short to average out this VM's swings.
  local amount=(--total 20000)
  (( $2 == 1 )) && amount=(--duration 3s)
  field "$("$stead" bench "$1" --endpoints "$3" --clients "$2" --conns $(( $2 < 8 ? $2 : 8 )) \
    "${amount[@]}" --key-space 10000 --no-progress --json)" throughput
}

run() { # n
  local n=$1 kind w c
  declare -A result
  for kind in stead etcd; do
    start_cluster "$kind" "$n"
    for w in $workloads; do
      for c in 1 16 256; do result[$kind,$w,$c]=$(throughput "$w" "$c" "$endpoints"); done
    done
    stop_cluster
  done
  local csv="bench/results/$n.csv"
  echo "members,workload,clients,stead,etcd" >"$csv"
  printf '\n%s member(s)\n%-20s %8s %12s %12s %7s\n' "$n" workload clients stead etcd ratio
  for w in $workloads; do
    for c in 1 16 256; do
      echo "$n,$w,$c,${result[stead,$w,$c]},${result[etcd,$w,$c]}" >>"$csv"
      printf '%-20s %8s %12.0f %12.0f %7.2f\n' "$w" "$c" "${result[stead,$w,$c]}" "${result[etcd,$w,$c]}" \
        "$(awk -v a="${result[stead,$w,$c]}" -v b="${result[etcd,$w,$c]}" 'BEGIN { print (b > 0 ? a / b : 0) }')"
    done
  done
  python3 bench/plot.py bench/results/*.csv >bench/results/throughput.svg && echo "plot: bench/results/throughput.svg"
}

resources() {
  start_cluster stead 1
  local api=http://127.0.0.1:26440 c out
  printf '\nresources (stead REST API)\n%-28s %8s %12s %10s %10s\n' workload clients req/s p50_ms p99_ms
  for c in 1 16 256; do
    out=$("$stead" bench apply --api-server "$api" --clients "$c" --total $(( c == 1 ? 1000 : 10000 )) \
      --key-space 1000 --no-progress --json)
    printf '%-28s %8s %12.0f %10.2f %10.2f\n' apply "$c" "$(field "$out" throughput)" "$(field "$out" p50_ms)" "$(field "$out" p99_ms)"
  done
  out=$("$stead" bench resource-watch --api-server "$api" --watchers 1000 --clients 16 --total 1000 \
    --key-space 100 --no-progress --json)
  printf '%-28s %8s %12.0f %10.2f %10.2f   (events/s to 1000 watchers; %s of %s delivered)\n' \
    "resource-watch x1000" 16 "$(field "$out" events_per_s)" "$(field "$out" p50_ms)" "$(field "$out" p99_ms)" \
    "$(field "$out" delivered)" "$(field "$out" expected)"
  stop_cluster
}

ready_ms() { # endpoint: milliseconds until a put succeeds
  local t0 t1 host=${1%:*} port=${1##*:}
  t0=$(date +%s%N)
  # Wait for the port first: etcdctl's own reconnect backoff (about 1 s) would hide the
  # real time otherwise.
  for _ in $(seq 5000); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && break
    sleep 0.005
  done
  for _ in $(seq 500); do
    ETCDCTL_API=3 etcdctl --endpoints="$1" --command-timeout=1s put __ready 1 >/dev/null 2>&1 && break
    sleep 0.01
  done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

# The disk's fsync latency beside a single client's put latency, on a fresh single member
# of each system: three alternating rounds (the probe's own spread on a VM is wide), each
# ratio printed, and the median. A put also pays a client round trip, measured in the same
# round as a serializable one-key get: `floor` is (round trip + fsync) / fsync, the least
# ratio a server reached over the network can show if its flush costs what the probe's
# does, and `over_ms` is what the put took beyond that round trip and flush.
fsync_ratio() {
  local kind i disk rtt put ratios=()
  printf '\n1-client put p50 against the disk (4 KiB appended + fdatasync in the data directory)\n'
  printf '%-6s %6s %10s %10s %10s %7s %7s %8s\n' system round fsync_ms rtt_ms put_ms ratio floor over_ms
  for kind in stead etcd; do
    ratios=()
    start_cluster "$kind" 1
    for i in 1 2 3; do
      disk=$(field "$("$stead" bench fsync --data-dir "$work" --total 2000 --no-progress --json)" p50_ms)
      rtt=$(field "$("$stead" bench range-serializable --endpoints 127.0.0.1:23790 --clients 1 --total 2000 \
        --key-space 1 --no-progress --json)" p50_ms)
      put=$(field "$("$stead" bench put --endpoints 127.0.0.1:23790 --clients 1 --total 2000 --no-progress --json)" p50_ms)
      ratios+=("$(awk -v a="$put" -v b="$disk" 'BEGIN { printf "%.2f", a / b }')")
      printf '%-6s %6s %10.3f %10.3f %10.3f %7s %7.2f %8.3f\n' "$kind" "$i" "$disk" "$rtt" "$put" "${ratios[-1]}" \
        "$(awk -v r="$rtt" -v d="$disk" 'BEGIN { print (r + d) / d }')" "$(awk -v p="$put" -v r="$rtt" -v d="$disk" 'BEGIN { print p - r - d }')"
    done
    stop_cluster
    printf '%-6s median ratio %s\n' "$kind" "$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)"
  done
}

footprint() {
  local keys=${FOOTPRINT_KEYS:-100000} kind
  fsync_ratio
  printf '\nfootprint after %s keys of 256 B\n%-6s %10s %10s %12s %14s\n' "$keys" system rss_mb disk_mb cold_start_ms recovery_ms
  for kind in stead etcd; do
    local dir="$work/fp-$kind" ep=127.0.0.1:23790
    local args=(--name m0 --data-dir "$dir" --listen-client-urls "http://$ep" --advertise-client-urls "http://$ep"
      --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800
      --initial-cluster m0=http://127.0.0.1:23800)
    start_one() { if [ "$kind" = stead ]; then "$stead" serve "${args[@]}" --listen-api-url http://127.0.0.1:26440 >>"$work/fp-$kind.log" 2>&1 &
      else etcd "${args[@]}" >>"$work/fp-$kind.log" 2>&1 & fi; pid=$!; }
    start_one
    local cold; cold=$(ready_ms "$ep")
    "$stead" bench put --endpoints "$ep" --clients 64 --conns 8 --total "$keys" --key-space "$keys" --json >/dev/null
    # Compact history so both hold one version per key.
    local rev; rev=$(ETCDCTL_API=3 etcdctl --endpoints="$ep" endpoint status -w json | sed -E 's/.*"revision":([0-9]+).*/\1/')
    ETCDCTL_API=3 etcdctl --endpoints="$ep" compact "$rev" >/dev/null
    ETCDCTL_API=3 etcdctl --endpoints="$ep" defrag >/dev/null
    local rss; rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
    local disk; disk=$(du -sm "$dir" | cut -f1)
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    start_one
    local recovery; recovery=$(ready_ms "$ep")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    printf '%-6s %10s %10s %12s %14s\n' "$kind" "$rss" "$disk" "$cold" "$recovery"
  done
}

case "$mode" in
  footprint) footprint ;;
  single) run 1 ;;
  cluster) run 3 ;;
  resources) resources ;;
  both) run 1; run 3; footprint; resources ;;
  *) echo "usage: $0 [single|cluster|footprint|resources|both]" >&2; exit 2 ;;
esac
