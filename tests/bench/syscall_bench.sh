#!/usr/bin/env bash
# System calls per accepted message (issue: single node). The accept benchmark's load
# (smtp-source, 20 sessions, 1 KiB, a new connection per message; `-d` for reuse) goes to
# smtp-sink (the no-disk ceiling) and to bridgehead with `strace -f -c` attached to the
# whole process (every thread: sessions, committer, local delivery). Prints, per target,
# each system call's calls per message and the total. strace slows the targets down, so
# this counts work; accept_bench.sh measures speed.
#
# usage: tests/bench/syscall_bench.sh [BRIDGEHEAD_BINARY] [MESSAGES] [reuse]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/bench_lib.sh
. tests/bench/bench_lib.sh
BIN=${1:-build/release/node/bridgehead}
N=${2:-2000}
FLAGS=""; MODE="new conn/msg"
if [ "${3:-}" = reuse ]; then FLAGS="-d"; MODE="reuse (-d)"; fi
[ -x "$BIN" ] || { echo "no bridgehead binary at $BIN"; exit 2; }
for t in smtp-source smtp-sink strace; do
  command -v $t >/dev/null || PATH=$PATH:/usr/sbin
  command -v $t >/dev/null || { echo "missing $t: run deploy/install-deps.sh"; exit 2; }
done

WORK=$(mktemp -d /var/tmp/bh-syscalls.XXXXXX)
chmod 755 "$WORK"
chattr +T "$WORK" 2>/dev/null || true
PIDS=()
cleanup() {
  stop_pids
  rm -rf "$WORK"
}
trap cleanup EXIT

send() {  # port count
  smtp-source $FLAGS -s 20 -m "$2" -l 1024 -f from@example.net -t alice@example.org "127.0.0.1:$1" \
    > "$WORK/src.log" 2>&1 || { echo "smtp-source failed:"; cat "$WORK/src.log"; exit 1; }
}
# Attaches strace to PID (all threads) while N messages are sent; writes "calls syscall"
# lines, most first, to $WORK/NAME.calls.
count() {  # pid port name
  send "$2" 200  # warm up: spare files, caches, directories
  sleep 1
  strace -f -c -p "$1" -o "$WORK/$3.strace" 2>/dev/null & local s=$!
  sleep 0.5
  send "$2" "$N"
  sleep 2  # the delivery of the last messages
  kill -INT $s; wait $s || true
  awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $4, $NF }' "$WORK/$3.strace" | sort -rn > "$WORK/$3.calls"
}

SINK_PORT=$(free_port)
smtp-sink -u postfix -m 100 "127.0.0.1:$SINK_PORT" 1000 & SINK_PID=$!; PIDS+=("$SINK_PID")
BH_PORT=$(free_port); BH_ADMIN=$(free_port)
bench_node_yaml bench "$WORK/bh" "$BH_PORT" "$BH_ADMIN" > "$WORK/bh.yaml"
"$BIN" --config "$WORK/bh.yaml" 2> "$WORK/bh.log" & BH_PID=$!; PIDS+=("$BH_PID")
wait_banner "$SINK_PORT"; wait_banner "$BH_PORT"

count "$SINK_PID" "$SINK_PORT" smtp-sink
count "$BH_PID" "$BH_PORT" bridgehead

echo "system calls per message: $N messages x 1 KiB, 20 sessions, $MODE; $(date +%F)"
python3 - "$WORK" "$N" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
cols = {}
for t in ("smtp-sink", "bridgehead"):
    cols[t] = {}
    for line in open(f"{work}/{t}.calls"):
        calls, name = line.split()
        cols[t][name] = int(calls) / n
names = sorted(set(cols["smtp-sink"]) | set(cols["bridgehead"]),
               key=lambda k: -cols["bridgehead"].get(k, 0))
print(f"{'syscall':18} {'smtp-sink':>10} {'bridgehead':>11}")
for k in names:
    a, b = cols["smtp-sink"].get(k, 0), cols["bridgehead"].get(k, 0)
    if a >= 0.01 or b >= 0.01:
        print(f"{k:18} {a:10.2f} {b:11.2f}")
print(f"{'total':18} {sum(cols['smtp-sink'].values()):10.2f} {sum(cols['bridgehead'].values()):11.2f}")
PY
