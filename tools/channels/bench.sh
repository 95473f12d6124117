#!/usr/bin/env bash
# bench.sh ROUNDS "MODES" [N] [CLIENT_CPU]: run-one.sh for each mode in turn, ROUNDS times
# (modes alternate so drift hits them alike), N stats each (default 20000), depth 2, no ring
# flags. Prints a header line with the fuse module parameters, then run-one.sh's lines.
# As root, under flock /tmp/handlefs-mount.lock; for the ring modes (b c p) enable_uring must
# be Y, e.g. with-uring.sh bench.sh 3 "a b c d" (scripts/bench-channels does both).
# Exits 1 if any run failed; runs the rest anyway. On INT or TERM it exits once the current
# run-one.sh has cleaned up (each run has a bounded timeout, in the caller's process group).
set -euo pipefail
trap 'exit 130' INT
trap 'exit 143' TERM
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS="${1:-3}"; MODES="${2:-a b c d}"; N="${3:-20000}"; PIN="${4:-}"
P=/sys/module/fuse/parameters
param() { cat "$P/$1" 2>/dev/null || echo absent; }
echo "# $(date -u +%FT%TZ) kernel=$(uname -r) enable_uring=$(param enable_uring) wake_here=$(param wake_here) N=$N pin=${PIN:--}"
failed=0
for r in $(seq "$ROUNDS"); do
  for m in $MODES; do
    echo -n "round=$r "
    timeout --foreground 100 "$HERE/run-one.sh" "$m" "$N" 2 0 $PIN || { echo "(mode $m failed: status $?)"; failed=1; }
  done
done
exit "$failed"
