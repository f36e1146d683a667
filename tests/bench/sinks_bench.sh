#!/usr/bin/env bash
# Sinks benchmark (issue 8): accept throughput of one bridgehead node with no sinks, and
# of a second identical node whose arrival chain is a real OpenDKIM milter (Mode sv,
# signing every message: From is in its Domain, the client in InternalHosts).
# Postfix's smtp-source sends N messages of 1 KiB over S sessions, connection reuse (-d).
# "Accepted" = smtp-source finished (every 250 given, after fsync). Prints a table and
# checks that the milter node's Maildir copies carry a DKIM-Signature.
#
# usage: tests/bench/sinks_bench.sh [BRIDGEHEAD_BINARY] [MESSAGES] [SESSIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/bench_lib.sh
. tests/bench/bench_lib.sh
BIN=${1:-build/release/node/bridgehead}
N=${2:-2000}
S=${3:-20}
[ -x "$BIN" ] || { echo "no bridgehead binary at $BIN"; exit 2; }
PATH=$PATH:/usr/sbin
for t in smtp-source opendkim opendkim-genkey; do
  command -v $t >/dev/null || { echo "missing $t: run deploy/install-deps.sh"; exit 2; }
done

WORK=$(mktemp -d /var/tmp/bh-sinks-bench.XXXXXX)
chmod 711 "$WORK"
PIDS=()
cleanup() {
  stop_pids
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- OpenDKIM (more-recipes.md §3) ---
K=$WORK/dkim; mkdir -p "$K/keys"
opendkim-genkey -b 2048 -d example.org -s sel1 -D "$K/keys"
DKIM_PORT=$(free_port)
cat > "$K/opendkim.conf" <<CONF
Syslog no
Mode sv
Socket inet:$DKIM_PORT@127.0.0.1
PidFile $K/opendkim.pid
Domain example.org
Selector sel1
KeyFile $K/keys/sel1.private
Canonicalization relaxed/simple
InternalHosts 127.0.0.1
RequireSafeKeys false
TemporaryDirectory $K
CONF
opendkim -f -x "$K/opendkim.conf" > "$K/out" 2>&1 & PIDS+=($!)
wait_port "$DKIM_PORT"

start_node() {  # name extra-yaml; sets PORT (no command substitution: the node would hold its pipe)
  local name=$1 port admin
  port=$(free_port); admin=$(free_port)
  { bench_node_yaml "$name" "$WORK/$name" "$port" "$admin"; echo "$2"; } > "$WORK/$name.yaml"
  "$BIN" --config "$WORK/$name.yaml" > "$WORK/$name.log" 2>&1 & PIDS+=($!)
  wait_port "$port"
  PORT=$port
}
start_node plain ""
PLAIN_PORT=$PORT
start_node dkim "sinks:
  define:
    - {name: dkim, kind: milter, socket: \"inet:$DKIM_PORT@127.0.0.1\"}
  on_arrival: [dkim]"
DKIM_NODE_PORT=$PORT

run() {  # port -> "seconds msg/s"
  local t0 t1
  t0=$(date +%s.%N)
  smtp-source -d -s "$S" -m "$N" -l 1024 -f alice@example.org -t alice@example.org "127.0.0.1:$1" \
    > "$WORK/src-$1.log" 2>&1 || { echo "smtp-source to $1 failed:"; cat "$WORK/src-$1.log"; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1-$t0:.2f} {$N/($t1-$t0):.0f}')"
}
sync; sleep 2
read -r s0 r0 < <(run "$PLAIN_PORT")
sync; sleep 2
read -r s1 r1 < <(run "$DKIM_NODE_PORT")

# Every message must be there, and the milter node's copies signed.
count() { find "$WORK/$1/mailboxes/alice/new" -type f 2>/dev/null | wc -l; }
for _ in $(seq 1 600); do
  [ "$(count plain)" -ge "$N" ] && [ "$(count dkim)" -ge "$N" ] && break
  sleep 0.1
done
signed=$(grep -l '^DKIM-Signature:' "$WORK"/dkim/mailboxes/alice/new/* 2>/dev/null | wc -l)

echo
echo "sinks benchmark: $N messages x 1 KiB, $S sessions (-d), $(nproc) cores, fsync on, binary $BIN; $(date -u +%F)"
printf '%-28s %9s %9s %10s\n' target seconds msg/s vs_plain
printf '%-28s %9s %9s %10s\n' "bridgehead, no sinks" "$s0" "$r0" "1.00x"
printf '%-28s %9s %9s %10s\n' "bridgehead + OpenDKIM milter" "$s1" "$r1" "$(python3 -c "print(f'{$r1/$r0:.2f}x')")"
echo "delivered: plain $(count plain)/$N, dkim $(count dkim)/$N, DKIM-signed $signed"
[ "$(count plain)" = "$N" ] && [ "$(count dkim)" = "$N" ] && [ "$signed" = "$N" ] || { echo "MISMATCH"; exit 1; }
