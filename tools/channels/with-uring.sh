#!/usr/bin/env bash
# with-uring.sh CMD...: runs CMD with /sys/module/fuse/parameters/enable_uring=Y (the kernel
# offers FUSE over io_uring only to connections whose INIT happens while it is Y) and, on any
# exit, writes N to enable_uring and to wake_here (where the kernel has it). As root.
set -euo pipefail
P=/sys/module/fuse/parameters
[ -w "$P/enable_uring" ] || { echo "with-uring.sh: $P/enable_uring is missing or not writable (root? fuse with io_uring?)" >&2; exit 1; }
restore() {
  echo N > "$P/enable_uring"
  if [ -e "$P/wake_here" ]; then echo N > "$P/wake_here"; fi
}
trap restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo Y > "$P/enable_uring"
"$@"
