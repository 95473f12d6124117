/**
 * Capability and fd-limit probes used at start-up. They report facts; the caller decides what to
 * do (e.g. use open_by_handle_at only with CAP_DAC_READ_SEARCH).
 */
import { readdirSync } from 'node:fs';
import { CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN } from './constants.js';
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
