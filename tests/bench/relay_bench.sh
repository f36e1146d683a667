#!/usr/bin/env bash
# Relay throughput benchmark (issue: relay throughput, messages/s in and out, bridgehead
# between smtp-source and smtp-sink, against Postfix in the same role in the same run).
#
#   smtp-source --(N x 1 KiB, 20 sessions)--> MTA --(SMTP)--> smtp-sink (counts, no disk)
#
# The MTA is, one after the other in the same run:
#   postfix     - a throwaway real Postfix (queue on the same disk), relayhost = the sink,
#                 default concurrency (20 per destination) and connection caching
#   bridgehead  - this project's release build: smtp.relay_networks 127.0.0.0/8 and one
#                 smart host connector to the sink, queue.max_per_hop 20
# Before them, smtp-source talks to the sink directly once (the protocol ceiling).
# "in"  = smtp-source finished: every message got its 250 (after the MTA's fsync).
# "out" = the sink has received all N (end-to-end), counted from the same start.
# Every target must hand the sink exactly N messages (smtp-sink -c counts each "."),
# else the script fails. Loopback only, free ports, cleans up.
#
# usage: tests/bench/relay_bench.sh [BRIDGEHEAD_BINARY] [MESSAGES]
# env:   BH_BENCH_SETTLE (s, default 40) pause after a sync before each disk target
#        BH_BENCH_KEEP=1 keep the work folder (logs, queues) when the run fails; 2 always
#        BH_BENCH_TIMEOUT (s, default 120) give up when the sink count stalls this long
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/bench_lib.sh
. tests/bench/bench_lib.sh
BIN=${1:-build/release/node/bridgehead}
N=${2:-10000}
SESSIONS=20
PER_HOP=20
SETTLE=${BH_BENCH_SETTLE:-40}
STALL=${BH_BENCH_TIMEOUT:-120}
[ -x "$BIN" ] || { echo "no bridgehead binary at $BIN (cmake --preset release && cmake --build --preset release)"; exit 2; }
for t in smtp-source smtp-sink postfix; do
  command -v $t >/dev/null || PATH=$PATH:/usr/sbin
  command -v $t >/dev/null || { echo "missing $t: run deploy/install-deps.sh"; exit 2; }
done

WORK=$(mktemp -d /var/tmp/bh-relay.XXXXXX)   # a real disk, not tmpfs
chmod 755 "$WORK"
# Separate ext4 block groups for the Postfix queue and the bridgehead data dir (see
# accept_bench.sh: otherwise the second target pays for the first one's deletions).
chattr +T "$WORK" 2>/dev/null || echo "note: chattr +T failed; targets share block groups"
PIDS=()
OK=0
cleanup() {
  stop_pids "$WORK/pf/queue"
  local keep=${BH_BENCH_KEEP:-0}
  if { [ "$OK" != 1 ] && [ "$keep" = 1 ]; } || [ "$keep" = 2 ]; then
    echo "kept $WORK (bh.log, bh/, pf/maillog, sink.out, src-*.log)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- smtp-sink, the final destination. -c writes "sess=.. quit=.. mesg=..\r" after every
# session end, QUIT and "."; the last complete record has the message count. ---
SINK_PORT=$(free_port)
smtp-sink -c -u postfix -m 200 127.0.0.1:$SINK_PORT 1000 > "$WORK/sink.out" 2>&1 & PIDS+=($!)
sink_count() {
  local rec last=0
  while IFS= read -r -d $'\r' rec; do
    case $rec in *mesg=*) last=${rec##*mesg=};; esac
  done < <(tail -c 256 "$WORK/sink.out")
  echo "$last"
}

# --- Postfix (env-recipes §5b), relaying everything to the sink ---
PF_PORT=$(free_port)
PF=$WORK/pf
mkdir -p "$PF/conf" "$PF/queue" "$PF/data"
chown postfix:postfix "$PF/data"
cat > "$PF/conf/main.cf" <<CONF
compatibility_level = 3.6
config_directory = $PF/conf
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.example.test
mydomain = example.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relay_domains =
default_transport = smtp
relayhost = [127.0.0.1]:$SINK_PORT
smtp_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
CONF
sed "s/@PORT@/$PF_PORT/" tests/support/postfix-master.cf > "$PF/conf/master.cf"
postfix -c "$PF/conf" check
script -qec "postfix -c $PF/conf start" /dev/null >/dev/null
pf_queued() { find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" "$PF/queue/maildrop" -type f 2>/dev/null | wc -l; }

# --- bridgehead, relaying everything to the sink ---
BH_PORT=$(free_port); BH_ADMIN=$(free_port)
{ bench_node_yaml bench "$WORK/bh" "$BH_PORT" "$BH_ADMIN"; cat; } > "$WORK/bh.yaml" <<YAML
  relay_networks: ["127.0.0.0/8"]
queue:
  max_per_hop: $PER_HOP
routing:
  smtp_connectors:
    - name: out
      smart_hosts: ["127.0.0.1:$SINK_PORT"]
      address_spaces: [{pattern: "*", cost: 1}]
      tls: none
      max_connections: $PER_HOP
YAML
"$BIN" --config "$WORK/bh.yaml" 2> "$WORK/bh.log" & BH_PID=$!; PIDS+=("$BH_PID")
bh_queued() { find "$WORK/bh/queue/queue" -type f 2>/dev/null | wc -l; }

wait_banner $SINK_PORT; wait_banner $PF_PORT
wait_banner $BH_PORT || { tail -5 "$WORK/bh.log" >&2; fail "bridgehead did not start"; }

# run TARGET PORT QUEUED_FN: sets IN[TARGET] and OUT[TARGET] (seconds); fails unless the
# sink got exactly N.
declare -A IN OUT
run() {
  local t=$1 port=$2 queued=$3 base t0 t1 t2 have last_have last_change now
  base=$(sink_count)
  t0=$(date +%s.%N)
  smtp-source -s $SESSIONS -m "$N" -l 1024 -f from@example.net -t user@relay.test "127.0.0.1:$port" \
    > "$WORK/src-$t.log" 2>&1 || { cat "$WORK/src-$t.log" >&2; fail "smtp-source to $t failed"; }
  t1=$(date +%s.%N)
  last_have=-1; last_change=$SECONDS
  for (( ;; )); do
    have=$(( $(sink_count) - base ))
    [ "$have" -ge "$N" ] && break
    if [ "$have" != "$last_have" ]; then last_have=$have; last_change=$SECONDS; fi
    (( SECONDS - last_change < STALL )) ||
      fail "$t: the sink has $have of $N after no progress for ${STALL} s (queue: $($queued) files)"
    sleep 0.05
  done
  t2=$(date +%s.%N)
  # Duplicates: let the MTA drain its queue, then count once more.
  for _ in $(seq 1 100); do [ "$($queued)" = 0 ] && break; sleep 0.1; done
  sleep 1
  have=$(( $(sink_count) - base ))
  [ "$have" = "$N" ] || fail "$t: the sink received $have messages for $N sent (duplicates)"
  [ "$($queued)" = 0 ] || fail "$t: $($queued) files still queued after all $N arrived"
  IN[$t]=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  OUT[$t]=$(python3 -c "print(f'{$t2-$t0:.2f}')")
}
none_queued() { echo 0; }

run smtp-sink $SINK_PORT none_queued
sync; sleep "$SETTLE"
run postfix $PF_PORT pf_queued
sync; sleep "$SETTLE"
run bridgehead $BH_PORT bh_queued

rate() { python3 -c "print(f'{$N/$1:.0f}')"; }
ratio() { python3 -c "print(f'{($N/$1)/($N/$2):.2f}x')"; }
echo
echo "relay benchmark: $N messages x 1 KiB, $SESSIONS sessions in, $PER_HOP connections out, $(nproc) cores, fsync on, ${SETTLE} s pause before each disk target; $(date -u '+%F %H:%M UTC')"
printf '%-12s %8s %9s %8s %10s %10s %11s\n' target in_s in_msg/s out_s out_msg/s in_vs_pf out_vs_pf
for t in smtp-sink postfix bridgehead; do
  printf '%-12s %8s %9s %8s %10s %10s %11s\n' "$t" "${IN[$t]}" "$(rate "${IN[$t]}")" "${OUT[$t]}" \
    "$(rate "${OUT[$t]}")" "$(ratio "${IN[$t]}" "${IN[postfix]}")" "$(ratio "${OUT[$t]}" "${OUT[postfix]}")"
done
echo "each target: the sink counted exactly $N messages and the MTA queue is empty (smtp-sink row: direct, no MTA)"
echo "bridgehead / postfix: in $(ratio "${IN[bridgehead]}" "${IN[postfix]}"), out $(ratio "${OUT[bridgehead]}" "${OUT[postfix]}") (target >= 2.00x)"
OK=1
