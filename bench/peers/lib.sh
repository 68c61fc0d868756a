# Shell functions shared by the start/stop scripts in bench/peers/ (sourced, not run).
#
# The servers are started with setsid from a script that exits, so they are nobody's child by
# the time they are stopped: "alive" reads /proc (a zombie counts as gone), and a pid is only
# signalled while its command line still names the program that was started, so a recycled pid
# is never hit.

# process_alive PID PATTERN: PID runs and its command line contains PATTERN.
process_alive() {
    local pid=$1 pattern=$2 state
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$state" != Z ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

# stop_process PIDFILE PATTERN SIGNAL POLLS: send SIGNAL, wait up to POLLS × 0.2 s, then
# SIGKILL what is left of its process group that still runs PATTERN, and remove PIDFILE.
stop_process() {
    local pidfile=$1 pattern=$2 signal=$3 polls=$4 pid
    [[ -f "$pidfile" ]] || return 0
    pid=$(cat "$pidfile")
    if process_alive "$pid" "$pattern"; then
        kill "-$signal" "$pid" 2>/dev/null || true
        for _ in $(seq "$polls"); do
            process_alive "$pid" "$pattern" || break
            sleep 0.2
        done
        if process_alive "$pid" "$pattern"; then
            echo "warning: $pattern (pid $pid) did not stop after SIGTERM/SIGINT; killing it" >&2
        fi
    fi
    # Whatever of its process group (setsid made the pid the group id) is still there: children
    # it may have left behind, matched by the same program name.
    local member
    for member in $(pgrep -g "$pid" 2>/dev/null || true); do
        if process_alive "$member" "$pattern"; then kill -KILL "$member" 2>/dev/null || true; fi
    done
    rm -f "$pidfile"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# kinesis_answers URL...: every URL answers a Kinesis ListStreams call with HTTP 200.
# (Unsigned: kinesalite and Riffle's dev cluster both serve anonymous requests.)
kinesis_answers() {
    python3 - "$@" <<'PY' 2>/dev/null
import sys, urllib.request
for url in sys.argv[1:]:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
        "Content-Type": "application/x-amz-json-1.1",
        # kinesalite insists on the shape of a signature, not on its value.
        "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20000101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0",
        "X-Amz-Date": "20000101T000000Z",
    })
    with urllib.request.urlopen(request, timeout=2) as answer:
        if answer.status != 200:
            sys.exit(1)
PY
}
