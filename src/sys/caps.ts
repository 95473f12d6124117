/**
 * Capability and fd-limit probes used at start-up, and the fd table's one growth (growFdTable).
 * The probes report facts; the caller decides what to do (e.g. use open_by_handle_at only with
 * CAP_DAC_READ_SEARCH).
 */
import { readdirSync } from 'node:fs';
import { CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, F_DUPFD_CLOEXEC } from './constants.js';
import { sys } from './syscalls.js';

interface Caps {
  /** CAP_DAC_READ_SEARCH: needed by open_by_handle_at */
  dacReadSearch: boolean;
  /** CAP_SYS_ADMIN: needed by mount(2) and FUSE passthrough backing files */
  sysAdmin: boolean;
}

/** Effective capabilities of this process that handlefs cares about. */
export function probeCaps(): Caps {
  return {
    dacReadSearch: sys.capEffective(CAP_DAC_READ_SEARCH),
    sysAdmin: sys.capEffective(CAP_SYS_ADMIN),
  };
}

interface NofileLimit {
  /** -1 means unlimited (RLIM_INFINITY) */
  soft: number;
  hard: number;
}

/** RLIMIT_NOFILE. Node raises the soft limit to the hard one when it starts, so nothing here sets it. */
export function nofileLimit(): NofileLimit {
  const [soft, hard] = sys.getrlimitNofile();
  return { soft, hard };
}

/** fds this process has open now (a listing of /proc/self/fd), or -1 where /proc is not there. */
export function openFdCount(): number {
  try {
    return readdirSync('/proc/self/fd').length - 1; // less the listing's own fd
  } catch {
    return -1;
  }
}

/**
 * Make the process's fd table hold fds 0..n-1 now, in one step: a dup of `fd` at n - 1 (the
 * table grows to a power of two at least that large), closed at once. The kernel grows the table
 * by doubling as fds are opened, and in a process with more than one thread (Node always has
 * several) each growth waits for an RCU grace period (expand_fdtable's synchronize_rcu): about
 * 9 ms on this 2-vCPU VM, so a fresh server filling an fd cache of 15,000 fds paid eight of them,
 * about 100 ms, in the middle of the first listing (C, 19,000 O_PATH opens from a fresh start:
 * 6.5 us each with a second thread, 0.5 us once the table was grown). The table never shrinks:
 * the caller bounds n. Whether it grew (a limit below n, or no fd to spare, leaves it as it was).
 */
export function growFdTable(fd: number, n: number): boolean {
  if (n <= 1) return true;
  let high: number;
  try {
    high = sys.fcntlInt(fd, F_DUPFD_CLOEXEC, n - 1);
  } catch {
    return false;
  }
  sys.close(high);
  return true;
}
