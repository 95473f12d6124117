#!/usr/bin/env bash
# run-one.sh MODE [N] [DEPTH] [RINGFLAGS] [CLIENT_CPU]: mounts srv in MODE (a b c d p, see
# srv.c) on a fresh temp dir, warms up with 1000 stats, measures N (default 20000) stats of
# MNT/f with cli (pinned to CLIENT_CPU if given), unmounts, and prints one result line plus
# the server's counters. DEPTH: ring entries per queue (default 2); RINGFLAGS: see srv.c.
# Environment: SRV_CPU=n runs the server under taskset -c n; PAR=1 runs two clients at once,
# pinned to CPU 0 and CPU 1, N stats each.
# As root, under flock /tmp/handlefs-mount.lock. Binaries come from build/ beside this script
# (scripts/bench-channels compiles them). Always unmounts with umount2 and ends the server it
# started; if the unmount hangs it kills that server by pid and detaches the mount.
# Timeouts run with --foreground so that every process stays in the caller's process group:
# a signal to the group (an outer timeout, ^C) ends the clients and then this script's cleanup.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$HERE/build"
MODE="${1:?usage: run-one.sh MODE [N] [DEPTH] [RINGFLAGS] [CLIENT_CPU]}"
N="${2:-20000}"; DEPTH="${3:-2}"; RF="${4:-0}"; PIN="${5:-}"
for b in srv cli umnt; do
  [ -x "$BIN/$b" ] || { echo "run-one.sh: no $BIN/$b: build with scripts/bench-channels" >&2; exit 1; }
done
TMP="$(mktemp -d /tmp/handlefs-channels-XXXXXX)"
MNT="$TMP/mnt"; OUT="$TMP/srv.out"; LOG="$TMP/srv.log"
mkdir "$MNT"
SPID=""

# /proc/self/mountinfo, not mountpoint(1): a stat of the mount can hang (see README.md).
mounted() { awk -v m="$MNT" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
alive() { [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; }

# Unmounts and waits for the server to exit (it then writes its counters to $LOG).
stop_server() {
  if mounted; then
    if ! timeout --foreground -k 2 10 "$BIN/umnt" "$MNT"; then
      echo "unmount failed or hung: killing server $SPID, then detaching" >&2
      if alive; then kill -9 "$SPID"; fi
      sleep 0.5
      timeout --foreground -k 2 10 "$BIN/umnt" "$MNT" lazy || true
    fi
  fi
  for _ in $(seq 50); do alive || break; sleep 0.1; done
  if alive; then echo "server $SPID still running after unmount: killing it" >&2; kill -9 "$SPID"; fi
  if [ -n "$SPID" ]; then wait "$SPID" 2>/dev/null || true; fi
  SPID=""
}
cleanup() {
  stop_server
  if mounted; then
    echo "run-one.sh: $MNT is still mounted, leaving $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

${SRV_CPU:+taskset -c "$SRV_CPU"} "$BIN/srv" "$MODE" "$MNT" "$DEPTH" "$RF" >"$OUT" 2>"$LOG" &
SPID=$!
for _ in $(seq 100); do grep -q READY "$OUT" && break; alive || break; sleep 0.05; done
grep -q READY "$OUT" || { echo "server not ready"; cat "$LOG"; exit 1; }

srv_ticks() { awk '{ print $14 + $15 }' "/proc/$SPID/stat"; }
srv_oncpu_ns() { cat /proc/"$SPID"/task/*/schedstat | awk '{ s += $1 } END { print s }'; }
srv_ctxsw() {
  cat /proc/"$SPID"/task/*/status | awk '/^voluntary_ctxt/ { v += $2 } /^nonvoluntary/ { n += $2 } END { print v + n }'
}
# The warm-up also waits for a ring to become ready.
timeout --foreground -k 5 20 "$BIN/cli" "$MNT/f" 1000 $PIN >/dev/null || { echo "warmup failed"; cat "$LOG"; exit 1; }
c0=$(srv_ticks); s0=$(srv_oncpu_ns); x0=$(srv_ctxsw)
rc=0  # a failed client still gets its line printed; the script then exits with its status
if [ -n "${PAR:-}" ]; then
  t0=$(date +%s%N)
  timeout --foreground -k 5 60 "$BIN/cli" "$MNT/f" "$N" 0 >"$TMP/par0" & p0=$!
  timeout --foreground -k 5 60 "$BIN/cli" "$MNT/f" "$N" 1 >"$TMP/par1" & p1=$!
  wait "$p0" || rc=$?
  wait "$p1" || rc=$?
  t1=$(date +%s%N)
  out="PAR2 wall_us_per_stat_aggregate $(awk -v d=$((t1 - t0)) -v n="$N" 'BEGIN { printf "%.2f", d / 1000 / (2 * n) }') c0: $(cat "$TMP/par0") c1: $(cat "$TMP/par1")"
  N=$((2 * N))
else
  out=$(timeout --foreground -k 5 60 "$BIN/cli" "$MNT/f" "$N" $PIN) || rc=$?
fi
c1=$(srv_ticks); s1=$(srv_oncpu_ns); x1=$(srv_ctxsw)
stop_server
us=$(echo "$out" | awk '{ print ($1 == "PAR2") ? $3 : $8 }')
# ticks are 10 ms (USER_HZ 100): 10000 us each
awk -v mode="$MODE" -v depth="$DEPTH" -v rf="$RF" -v pin="${PIN:--}" -v srvcpu="${SRV_CPU:--}" \
    -v us="$us" -v n="$N" -v dt=$((c1 - c0)) -v ds=$((s1 - s0)) -v dx=$((x1 - x0)) -v out="$out" 'BEGIN {
  printf "srv_cpu=%s mode=%s depth=%s rf=%s pin=%s us/stat=%s srv_cpu_us/stat(ticks)=%.2f srv_oncpu_us/stat(schedstat)=%.2f srv_ctxsw/stat=%.2f | %s\n",
    srvcpu, mode, depth, rf, pin, us, dt * 10000 / n, ds / 1000 / n, dx / n, out }'
grep -E "^thread|rusage|cqe|fail|INIT|kernel did not" "$LOG" | sed 's/^/    /' || true
exit "$rc"
