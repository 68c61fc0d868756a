#!/usr/bin/env bash
# Benchmarks a local three-node Riffle cluster with riffle-bench and writes JSON reports to
# bench/results/.
#
# What it does: builds release binaries, starts `riffle-node dev` on loopback in a temporary
# directory, runs (a) a closed-loop throughput run and (b) an open-loop latency run, then stops
# the cluster and removes the directory. Every step is bounded; Ctrl-C stops the cluster too.
#
# Environment (all optional):
#   RIFFLE_BENCH_GRPC_PORT   gRPC port of node 1 (default 50051; nodes 2 and 3 use the next two)
#   RIFFLE_BENCH_PEER_PORT   QUIC port of node 1 (default 50061)
#   RIFFLE_BENCH_RECORDS     records of the throughput run (default 200000)
#   RIFFLE_BENCH_RATE        records/s of the latency run (default 5000)
#   RIFFLE_BENCH_DURATION_S  seconds of the latency run (default 20)
#   RIFFLE_BENCH_KEEP_LOGS   1 to copy the node logs next to the reports even on success
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

grpc_port=${RIFFLE_BENCH_GRPC_PORT:-50051}
peer_port=${RIFFLE_BENCH_PEER_PORT:-50061}
records=${RIFFLE_BENCH_RECORDS:-200000}
rate=${RIFFLE_BENCH_RATE:-5000}
duration_s=${RIFFLE_BENCH_DURATION_S:-20}
keep_logs=${RIFFLE_BENCH_KEEP_LOGS:-0}

# Bounds: how long the cluster may take to answer, and to stop after SIGINT.
ready_timeout_s=90
stop_polls_max=60 # 0.5 s apart

results_dir="$repo/bench/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
target_dir=$("$repo/scripts/cargo-target-dir")
node_bin="$target_dir/release/riffle-node"
bench_bin="$target_dir/release/riffle-bench"

echo "== building release binaries"
cargo build --release -p riffle-node -p riffle-bench

for port in "$grpc_port" $((grpc_port + 1)) $((grpc_port + 2)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "error: something already listens on 127.0.0.1:$port; set RIFFLE_BENCH_GRPC_PORT" >&2
        exit 1
    fi
done

data_dir=$(mktemp -d -t riffle-bench-XXXXXX)
cluster_pid=""
mkdir -p "$results_dir"

stop_cluster() {
    [[ -n "$cluster_pid" ]] || return 0
    if kill -0 "$cluster_pid" 2>/dev/null; then
        # `riffle-node dev` stops its nodes on SIGINT (SIGTERM to each, then waits).
        kill -INT "$cluster_pid" 2>/dev/null || true
        for _ in $(seq "$stop_polls_max"); do
            kill -0 "$cluster_pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
    # The cluster runs in its own process group (setsid): make sure none of it outlives us.
    kill -KILL -- "-$cluster_pid" 2>/dev/null || true
    wait "$cluster_pid" 2>/dev/null || true
    cluster_pid=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_cluster
    if [[ $status -ne 0 || "$keep_logs" == 1 ]]; then
        local logs="$results_dir/$stamp-logs"
        mkdir -p "$logs"
        cp "$data_dir/dev.log" "$logs/" 2>/dev/null || true
        for node in 1 2 3; do
            cp "$data_dir/node-$node/node.log" "$logs/node-$node.log" 2>/dev/null || true
        done
        echo "node logs kept in $logs"
    fi
    rm -rf "$data_dir"
    if [[ $status -ne 0 ]]; then
        echo "run-local.sh failed (exit $status); rerun: bench/run-local.sh" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== starting a local cluster in $data_dir"
setsid "$node_bin" dev --data-dir "$data_dir" --grpc-port "$grpc_port" --peer-port "$peer_port" \
    >"$data_dir/dev.log" 2>&1 </dev/null &
cluster_pid=$!

endpoints=()
for node in 0 1 2; do
    endpoints+=(--endpoint "http://127.0.0.1:$((grpc_port + node))")
done

echo "== (a) throughput: $records records of 1 KiB, concurrency 16, 100 per request, 4 shards"
"$bench_bin" "${endpoints[@]}" --wait-ready-s "$ready_timeout_s" \
    --stream bench-throughput --shards 4 --record-bytes 1024 \
    --records "$records" --concurrency 16 --batch 100 --time-limit-s 600 \
    --label "throughput: 1 KiB records, closed loop" \
    --json "$results_dir/$stamp-throughput.json"

echo "== (b) latency: $rate records/s of 1 KiB for $duration_s s, open loop, 10 per request"
"$bench_bin" "${endpoints[@]}" --wait-ready-s "$ready_timeout_s" \
    --stream bench-latency --shards 4 --record-bytes 1024 \
    --rate "$rate" --duration-s "$duration_s" --concurrency 32 --batch 10 --time-limit-s 300 \
    --label "latency: $rate records/s of 1 KiB, open loop" \
    --json "$results_dir/$stamp-latency.json"

if ! kill -0 "$cluster_pid" 2>/dev/null; then
    echo "error: the cluster stopped during the run; see the logs" >&2
    exit 1
fi
echo "== done: reports in $results_dir/$stamp-*.json"
