#!/usr/bin/env bash
# A three-node NATS JetStream cluster on 127.0.0.1 for benchmarks, from bench/.peers/ (see
# install.sh).
#
#   bench/peers/nats.sh start DIR   write configs, start three nats-server processes with their
#                                   JetStream store under DIR, wait until the cluster has a
#                                   JetStream meta leader every node knows (bounded)
#   bench/peers/nats.sh stop DIR    stop the processes started in DIR (SIGTERM, then SIGKILL)
#   bench/peers/nats.sh urls        print the client URLs, one a line
#   bench/peers/nats.sh version     print the installed nats-server version
#
# Every node runs JetStream with `sync_interval: always`: a message is fsynced before the ack,
# as Riffle's quorum is (JetStream's default acks before the fsync and syncs every 2 minutes).
# The benchmark creates its stream with 3 replicas and file storage, so an ack means the message
# is fsynced on a quorum (2 of 3) of the nodes.
#
# Environment: RIFFLE_BENCH_NATS_PORT  client port of node 1 (default 14222); node i uses
# port+i-1 for clients, port+10+i-1 for routes and port+20+i-1 for monitoring (HTTP).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers_dir=${RIFFLE_PEERS_DIR:-$repo/bench/.peers}
nats_server="$peers_dir/venv/bin/nats-server"
client_port=${RIFFLE_BENCH_NATS_PORT:-14222}

nodes=3
cluster_name=riffle-bench
ready_timeout_s=60  # bound on the wait for a meta leader
stop_polls_max=50   # 0.2 s apart: 10 s of SIGTERM before SIGKILL

port_of() { echo $((client_port + $2 + $1 - 1)); } # port_of NODE OFFSET

urls() {
    local node
    for node in $(seq "$nodes"); do
        echo "nats://127.0.0.1:$(port_of "$node" 0)"
    done
}

start() {
    local dir=$1 node routes=""
    [[ -x "$nats_server" ]] || { echo "error: $nats_server missing; run bench/peers/install.sh" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for node in $(seq "$nodes"); do
        for offset in 0 10 20; do
            local port
            port=$(port_of "$node" "$offset")
            if ! port_free "$port"; then
                echo "error: 127.0.0.1:$port is taken; set RIFFLE_BENCH_NATS_PORT" >&2
                exit 1
            fi
        done
        routes+="${routes:+, }nats-route://127.0.0.1:$(port_of "$node" 10)"
    done
    for node in $(seq "$nodes"); do
        local node_dir="$dir/nats-$node"
        mkdir -p "$node_dir/store"
        cat >"$node_dir/nats.conf" <<EOF
server_name: n$node
listen: 127.0.0.1:$(port_of "$node" 0)
http: 127.0.0.1:$(port_of "$node" 20)
jetstream {
  store_dir: "$node_dir/store"
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 16GB
}
cluster {
  name: $cluster_name
  listen: 127.0.0.1:$(port_of "$node" 10)
  routes: [$routes]
}
EOF
        # Refuse a configuration the server does not accept (an unknown key is only a warning
        # to a running server, so check it first and fail loudly).
        if ! "$nats_server" -c "$node_dir/nats.conf" -t >"$node_dir/config-check.log" 2>&1; then
            cat "$node_dir/config-check.log" >&2
            echo "error: nats-server rejects $node_dir/nats.conf" >&2
            exit 1
        fi
        setsid "$nats_server" -c "$node_dir/nats.conf" >"$node_dir/server.log" 2>&1 </dev/null &
        echo $! >"$node_dir/pid"
    done
    # Ready when every node answers /jsz with the same meta leader and a cluster of 3.
    local deadline=$((SECONDS + ready_timeout_s))
    while :; do
        if python3 - "$client_port" "$nodes" <<'EOF' 2>/dev/null; then
import json, sys, urllib.request
base, nodes = int(sys.argv[1]), int(sys.argv[2])
leaders = set()
for node in range(nodes):
    with urllib.request.urlopen(f"http://127.0.0.1:{base + 20 + node}/jsz", timeout=2) as answer:
        meta = json.load(answer).get("meta_cluster") or {}
    if not meta.get("leader") or meta.get("cluster_size", 0) < nodes:
        sys.exit(1)
    leaders.add(meta["leader"])
sys.exit(0 if len(leaders) == 1 else 1)
EOF
            break
        fi
        for node in $(seq "$nodes"); do
            if ! process_alive "$(cat "$dir/nats-$node/pid")" nats-server; then
                tail -20 "$dir/nats-$node/server.log" >&2
                echo "error: nats-server $node exited; log: $dir/nats-$node/server.log" >&2
                exit 1
            fi
        done
        if ((SECONDS >= deadline)); then
            echo "error: no JetStream meta leader after ${ready_timeout_s}s; logs in $dir/nats-*/server.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    # Keep what the servers say about themselves (version, sync_always) for the report.
    python3 - "$(port_of 1 20)" >"$dir/nats-jsz.json" <<'EOF2' || true
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/varz", timeout=2) as answer:
    varz = json.load(answer)
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/jsz", timeout=2) as answer:
    jsz = json.load(answer)
print(json.dumps({"version": varz.get("version"), "jetstream_config": jsz.get("config"),
                  "meta_cluster": jsz.get("meta_cluster")}, indent=2))
EOF2
    echo "nats: $nodes nodes ($("$nats_server" --version 2>&1 | head -1)) ready on $(urls | paste -sd' ')"
}

stop() {
    local dir=$1 node pid
    # SIGTERM to all three first, so they stop together rather than each losing its quorum.
    for node in $(seq "$nodes"); do
        [[ -f "$dir/nats-$node/pid" ]] || continue
        pid=$(cat "$dir/nats-$node/pid")
        if process_alive "$pid" nats-server; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for node in $(seq "$nodes"); do
        stop_process "$dir/nats-$node/pid" nats-server TERM "$stop_polls_max"
    done
}

case "${1:-}" in
    start) start "${2:?usage: nats.sh start DIR}" ;;
    stop) stop "${2:?usage: nats.sh stop DIR}" ;;
    urls) urls ;;
    version) "$nats_server" --version 2>&1 | head -1 | sed 's/.*v//' ;;
    *) echo "usage: bench/peers/nats.sh start DIR | stop DIR | urls | version" >&2; exit 2 ;;
esac
