#!/usr/bin/env bash
# Accept-rate benchmark (issue: single node). In one run, Postfix's smtp-source sends
# N messages of 1 KiB over 20 sessions to:
#   smtp-sink   - protocol only, no disk (the ceiling)
#   postfix     - a throwaway real Postfix, queue on the same disk, delivering to discard:
#   bridgehead  - this project's release build, spool and Maildir on the same disk
# once with a new connection per message and once with connection reuse (-d).
# "Accepted" = smtp-source finished, i.e. every message got its 250 (after fsync).
# Prints a table with messages per second and the ratios. Loopback only; cleans up.
#
# With ROUNDS > 1 every target runs that many times per mode, interleaved (sink, postfix,
# bridgehead, then again), and the table shows each target's median round, the ratios of
# the medians and the range of msg/s: one round's ratio to smtp-sink moves by several
# points with the sink's own spread.
#
# usage: tests/bench/accept_bench.sh [BRIDGEHEAD_BINARY] [MESSAGES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/bench_lib.sh
. tests/bench/bench_lib.sh
BIN=${1:-build/release/node/bridgehead}
N=${2:-10000}
ROUNDS=${3:-1}
SESSIONS=20
[ -x "$BIN" ] || { echo "no bridgehead binary at $BIN (cmake --preset release && cmake --build --preset release)"; exit 2; }
for t in smtp-source smtp-sink postfix; do
  command -v $t >/dev/null || PATH=$PATH:/usr/sbin
  command -v $t >/dev/null || { echo "missing $t: run deploy/install-deps.sh"; exit 2; }
done

WORK=$(mktemp -d /var/tmp/bh-bench.XXXXXX)   # a real disk, not tmpfs
chmod 755 "$WORK"
# Mark WORK a top of a directory hierarchy (chattr +T) so ext4's Orlov allocator puts the
# Postfix queue and the bridgehead data dir in block groups of their own. Otherwise every
# inode bridgehead allocates walks past the thousands of inodes Postfix just freed in the
# same group (see SETTLE below), and the table measures that walk, not the MTA.
chattr +T "$WORK" 2>/dev/null || echo "note: chattr +T failed; targets share block groups"
PIDS=()
cleanup() {
  stop_pids "$WORK/pf/queue"
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- smtp-sink ---
SINK_PORT=$(free_port)
smtp-sink -u postfix -m 100 127.0.0.1:$SINK_PORT 1000 & PIDS+=($!)

# --- Postfix (env-recipes §5b) ---
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
default_transport = discard:
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

# --- bridgehead ---
BH_PORT=$(free_port); BH_ADMIN=$(free_port)
bench_node_yaml bench "$WORK/bh" "$BH_PORT" "$BH_ADMIN" > "$WORK/bh.yaml"
if [ -n "${BH_BENCH_WORKERS:-}" ]; then  # node.workers (I/O threads); default: one per core
  sed -i "s/^  name: bench\$/  name: bench\n  workers: $BH_BENCH_WORKERS/" "$WORK/bh.yaml"
fi
"$BIN" --config "$WORK/bh.yaml" 2> "$WORK/bh.log" & BH_PID=$!; PIDS+=("$BH_PID")

wait_banner $SINK_PORT; wait_banner $PF_PORT; wait_banner $BH_PORT

# CPU time used by the whole machine (user + system + interrupts, every process and
# kernel thread, in clock ticks) and by bridgehead alone: per message they show what each
# target costs, and how much of the two cores was left idle.
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8; exit}' /proc/stat; }
all_ticks() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8; exit}' /proc/stat; }
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() {  # target port flags -> seconds msg/s machine-cpu-us/msg idle% bridgehead-cpu-us/msg
  local t0 t1 b0 b1 a0 a1 p0=0 p1=0
  b0=$(busy_ticks); a0=$(all_ticks); [ "$1" = bridgehead ] && p0=$(proc_ticks "$BH_PID")
  t0=$(date +%s.%N)
  smtp-source $3 -s $SESSIONS -m "$N" -l 1024 -f from@example.net -t alice@example.org "127.0.0.1:$2" \
    > "$WORK/src-$1.log" 2>&1 || { { echo "smtp-source to $1 failed:"; cat "$WORK/src-$1.log"; } >&2; exit 1; }
  t1=$(date +%s.%N)
  b1=$(busy_ticks); a1=$(all_ticks); [ "$1" = bridgehead ] && p1=$(proc_ticks "$BH_PID")
  python3 -c "
tick = 1e6 / $(getconf CLK_TCK)
idle = 100 * (1 - ($b1 - $b0) / max(1, $a1 - $a0))
own = f'{($p1 - $p0) * tick / $N:.0f}' if '$1' == 'bridgehead' else '-'
print(f'{$t1-$t0:.2f} {$N/($t1-$t0):.0f} {($b1 - $b0) * tick / $N:.0f} {idle:.0f} {own}')"
}
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$1/status; }

# Without a journal, ext4 makes every inode allocation search past inodes freed in the
# same block group in the last 30 s (330 s while the inode table block is still dirty),
# so a target that creates files right after another deleted thousands (Postfix removes
# each queue file) pays for the other's deletions. Besides the separate block groups
# above, each disk target starts after a sync and a pause.
SETTLE=${BH_BENCH_SETTLE:-40}
declare -A SEC RATE CPU IDLE OWN RANGE
for mode in new reuse; do
  flags=""; [ $mode = reuse ] && flags="-d"
  declare -A ROUND=()
  for round in $(seq 1 "$ROUNDS"); do
    for t in smtp-sink postfix bridgehead; do
      case $t in smtp-sink) p=$SINK_PORT;; postfix) p=$PF_PORT;; bridgehead) p=$BH_PORT;; esac
      if [ $t != smtp-sink ]; then sync; sleep "$SETTLE"; fi
      ROUND[$t-$round]=$(run $t $p "$flags")
    done
  done
  # Per target: the round with the median msg/s (the lower middle one for an even count).
  for t in smtp-sink postfix bridgehead; do
    med=$(for round in $(seq 1 "$ROUNDS"); do echo "${ROUND[$t-$round]}"; done | sort -k2,2n |
      awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)')
    read -r s r c i o <<< "$med"
    SEC[$t-$mode]=$s; RATE[$t-$mode]=$r; CPU[$t-$mode]=$c; IDLE[$t-$mode]=$i; OWN[$t-$mode]=$o
    RANGE[$t-$mode]=$(for round in $(seq 1 "$ROUNDS"); do echo "${ROUND[$t-$round]}"; done |
      awk 'NR == 1 {lo = hi = $2} {if ($2 < lo) lo = $2; if ($2 > hi) hi = $2} END {print lo "-" hi}')
  done
  unset ROUND
done

# bridgehead must really have every message: delivered to the Maildir or still queued.
for _ in $(seq 1 600); do
  q=$(find "$WORK/bh/queue/queue" -type f | wc -l)
  [ "$q" = 0 ] && break
  sleep 0.1
done
have=$(( $(find "$WORK/bh/mailboxes/alice/new" -type f | wc -l) + $(find "$WORK/bh/queue/queue" -type f | wc -l) ))
want=$(( 2 * N * ROUNDS ))

echo
echo "accept benchmark: $N messages x 1 KiB, $SESSIONS sessions, $(nproc) cores, fsync on, ${SETTLE} s pause before each disk target${BH_BENCH_WORKERS:+, bridgehead node.workers: $BH_BENCH_WORKERS}; $(date -u +%F)"
[ "$ROUNDS" -gt 1 ] && echo "$ROUNDS rounds: each row is the target's median round; range = lowest-highest msg/s"
printf '%-12s %-18s %9s %9s %12s %13s %14s %6s %14s %13s\n' target mode seconds msg/s vs_postfix vs_smtp-sink \
  machine_us/msg idle% bh_us/msg range
for mode in new reuse; do
  label="new conn/msg"; [ $mode = reuse ] && label="reuse (-d)"
  for t in smtp-sink postfix bridgehead; do
    r=${RATE[$t-$mode]}
    printf '%-12s %-18s %9s %9s %12s %13s %14s %6s %14s %13s\n' "$t" "$label" "${SEC[$t-$mode]}" "$r" \
      "$(python3 -c "print(f'{$r/${RATE[postfix-$mode]}:.2f}x')")" \
      "$(python3 -c "print(f'{100*$r/${RATE[smtp-sink-$mode]}:.0f}%')")" \
      "${CPU[$t-$mode]}" "${IDLE[$t-$mode]}" "${OWN[$t-$mode]}" "${RANGE[$t-$mode]}"
  done
done
echo "bridgehead: $have of $want messages accounted for (Maildir + queue); RSS after the run: $(rss_kib $BH_PID) KiB"
[ "$have" = "$want" ] || { echo "MISMATCH: bridgehead lost or duplicated messages"; exit 1; }
