/**
 * The kernel's switch for FUSE over io_uring (/sys/module/fuse/parameters/enable_uring: root
 * only, N by default). It only matters when a connection sends INIT, so the tools and tests turn
 * it on around a server's start and put back what they found.
 */
import * as fs from 'node:fs';

export const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

/** 'Y' or 'N', or null when this kernel has no FUSE over io_uring or the switch is not writable here. */
export function uringParam(): 'Y' | 'N' | null {
  try {
    const v = fs.readFileSync(ENABLE_URING, 'utf8').trim();
    if (v !== 'Y' && v !== 'N') return null;
    fs.accessSync(ENABLE_URING, fs.constants.W_OK);
    return v;
  } catch {
    return null;
  }
}

/** Why the switch cannot be used here, or null. */
export function uringUnavailable(): string | null {
  return uringParam() === null ? `${ENABLE_URING} is missing or not writable (Linux 6.14+ with CONFIG_FUSE_IO_URING, as root)` : null;
}

/** Set the switch (nothing when there is none). */
export function setUringParam(v: 'Y' | 'N' | null): void {
  if (v === null) return;
  try {
    fs.writeFileSync(ENABLE_URING, v);
  } catch {
    /* no such switch */
  }
}

/** Run fn with the switch set to value, then put back what was there (also when fn fails). */
export async function withUringParam<T>(value: 'Y' | 'N', fn: () => Promise<T>): Promise<T> {
  const old = uringParam();
  if (old === null) throw new Error(uringUnavailable()!);
  fs.writeFileSync(ENABLE_URING, value);
  try {
    return await fn();
  } finally {
    fs.writeFileSync(ENABLE_URING, old);
  }
}
