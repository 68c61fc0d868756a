#!/usr/bin/env bash
# A local three-zone Riffle cluster (`riffle-node dev`: three node processes on 127.0.0.1) for
# benchmarks. Not a peer, but started and stopped the same way as the peers beside it.
#
#   bench/peers/riffle.sh start DIR   start it with its data in DIR/riffle, wait until every
#                                     node's Kinesis API answers ListStreams (bounded)
#   bench/peers/riffle.sh stop DIR    stop it (SIGINT, which stops the nodes; then SIGKILL)
#   bench/peers/riffle.sh grpc-urls | kinesis-urls   print the endpoints, one a line
#
# The release binary is taken from cargo's target directory (build it first:
# `cargo build --release -p riffle-node`), or from RIFFLE_NODE_BIN.
# Environment: RIFFLE_BENCH_GRPC_PORT (default 50251), RIFFLE_BENCH_PEER_PORT (50261),
# RIFFLE_BENCH_KINESIS_PORT (50271); nodes 2 and 3 use the next two ports of each.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
grpc_port=${RIFFLE_BENCH_GRPC_PORT:-50251}
peer_port=${RIFFLE_BENCH_PEER_PORT:-50261}
kinesis_port=${RIFFLE_BENCH_KINESIS_PORT:-50271}

ready_timeout_s=90
stop_polls_max=150 # 0.2 s apart: `riffle-node dev` waits for its nodes to stop

urls() { # urls SCHEME_AND_HOST BASE_PORT
    local node
    for node in 0 1 2; do echo "$1:$(($2 + node))"; done
}

start() {
    local dir=$1 node_bin port
    node_bin=${RIFFLE_NODE_BIN:-$("$repo/scripts/cargo-target-dir")/release/riffle-node}
    [[ -x "$node_bin" ]] || { echo "error: $node_bin missing; cargo build --release -p riffle-node" >&2; exit 1; }
    for port in $(seq "$grpc_port" $((grpc_port + 2))) $(seq "$kinesis_port" $((kinesis_port + 2))); do
        port_free "$port" || { echo "error: 127.0.0.1:$port is taken; set RIFFLE_BENCH_GRPC_PORT / RIFFLE_BENCH_KINESIS_PORT" >&2; exit 1; }
    done
    mkdir -p "$dir/riffle"
    setsid "$node_bin" dev --data-dir "$dir/riffle" --grpc-port "$grpc_port" --peer-port "$peer_port" \
        --kinesis-port "$kinesis_port" >"$dir/riffle/dev.log" 2>&1 </dev/null &
    echo $! >"$dir/riffle.pid"
    local deadline=$((SECONDS + ready_timeout_s))
    # shellcheck disable=SC2046
    until kinesis_answers $(urls http://127.0.0.1 "$kinesis_port"); do
        if ! process_alive "$(cat "$dir/riffle.pid")" riffle-node; then
            tail -20 "$dir/riffle/dev.log" >&2
            echo "error: riffle-node dev exited; logs in $dir/riffle/" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "error: the Riffle cluster did not answer within ${ready_timeout_s}s; logs in $dir/riffle/" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "riffle: 3 nodes ready, gRPC $(urls http://127.0.0.1 "$grpc_port" | paste -sd' '), Kinesis $(urls http://127.0.0.1 "$kinesis_port" | paste -sd' ')"
}

case "${1:-}" in
    start) start "${2:?usage: riffle.sh start DIR}" ;;
    stop) stop_process "${2:?usage: riffle.sh stop DIR}/riffle.pid" riffle-node INT "$stop_polls_max" ;;
    grpc-urls) urls http://127.0.0.1 "$grpc_port" ;;
    kinesis-urls) urls http://127.0.0.1 "$kinesis_port" ;;
    *) echo "usage: bench/peers/riffle.sh start DIR | stop DIR | grpc-urls | kinesis-urls" >&2; exit 2 ;;
esac
