#!/usr/bin/env bash
# kinesalite (an unreplicated, in-memory Kinesis emulator) on 127.0.0.1, from bench/.peers/.
#
#   bench/peers/kinesalite.sh start DIR   start it (pid and log in DIR), wait until it answers
#   bench/peers/kinesalite.sh stop DIR    stop it
#   bench/peers/kinesalite.sh url         print its endpoint URL
#
# Environment: RIFFLE_BENCH_KINESALITE_PORT (default 14567).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
peers_dir=${RIFFLE_PEERS_DIR:-$repo/bench/.peers}
port=${RIFFLE_BENCH_KINESALITE_PORT:-14567}
url="http://127.0.0.1:$port"

ready_timeout_s=30
stop_polls_max=25 # 0.2 s apart

start() {
    local dir=$1
    [[ -d "$peers_dir/node/node_modules/kinesalite" ]] ||
        { echo "error: kinesalite missing; run bench/peers/install.sh" >&2; exit 1; }
    port_free "$port" || { echo "error: 127.0.0.1:$port is taken; set RIFFLE_BENCH_KINESALITE_PORT" >&2; exit 1; }
    mkdir -p "$dir"
    NODE_PATH="$peers_dir/node/node_modules" setsid node "$here/kinesalite.js" "$port" \
        >"$dir/kinesalite.log" 2>&1 </dev/null &
    echo $! >"$dir/kinesalite.pid"
    local deadline=$((SECONDS + ready_timeout_s))
    until kinesis_answers "$url"; do
        if ! process_alive "$(cat "$dir/kinesalite.pid")" kinesalite.js; then
            cat "$dir/kinesalite.log" >&2
            echo "error: kinesalite exited" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "error: kinesalite did not answer on $url within ${ready_timeout_s}s" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "kinesalite: ready on $url"
}

case "${1:-}" in
    start) start "${2:?usage: kinesalite.sh start DIR}" ;;
    stop) stop_process "${2:?usage: kinesalite.sh stop DIR}/kinesalite.pid" kinesalite.js TERM "$stop_polls_max" ;;
    url) echo "$url" ;;
    *) echo "usage: bench/peers/kinesalite.sh start DIR | stop DIR | url" >&2; exit 2 ;;
esac
