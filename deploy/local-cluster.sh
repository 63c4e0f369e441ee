#!/usr/bin/env bash
# Starts (or stops) a 3-member stead cluster on loopback.
#
#   deploy/local-cluster.sh start   # members m1..m3: clients on 2379/22379/32379, peers on
#                                   # 2380/22380/32380, REST API on 6443/26443/36443
#   deploy/local-cluster.sh status
#   deploy/local-cluster.sh stop
#
# Data and logs go to ${STEAD_CLUSTER_DIR:-./stead-cluster}. The binary is ${STEAD:-target/release/stead}
# (built with `cargo build --release` if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${STEAD_CLUSTER_DIR:-./stead-cluster}
bin=${STEAD:-target/release/stead}
client_ports=(2379 22379 32379)
peer_ports=(2380 22380 32380)
api_ports=(6443 26443 36443)
initial=""
for i in 0 1 2; do
  initial+="${initial:+,}m$((i + 1))=http://127.0.0.1:${peer_ports[$i]}"
done

start() {
  [ -x "$bin" ] || cargo build --release
  mkdir -p "$dir"
  for i in 0 1 2; do
    name="m$((i + 1))"
    if [ -f "$dir/$name.pid" ] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
      echo "$name already running (pid $(cat "$dir/$name.pid"))"
      continue
    fi
    "$bin" serve --name "$name" --data-dir "$dir/$name" \
      --listen-client-urls "http://127.0.0.1:${client_ports[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${client_ports[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[$i]}" \
      --listen-api-url "http://127.0.0.1:${api_ports[$i]}" \
      --initial-cluster "$initial" --initial-cluster-state new \
      >"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
    echo "$name started (pid $!, client http://127.0.0.1:${client_ports[$i]})"
  done
  echo "endpoints: 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
}

stop() {
  for i in 0 1 2; do
    name="m$((i + 1))"
    if [ -f "$dir/$name.pid" ]; then
      kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
      rm -f "$dir/$name.pid"
      echo "$name stopped"
    fi
  done
}

status() {
  for i in 0 1 2; do
    name="m$((i + 1))"
    if [ -f "$dir/$name.pid" ] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
      echo "$name running (pid $(cat "$dir/$name.pid"))"
    else
      echo "$name not running"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
