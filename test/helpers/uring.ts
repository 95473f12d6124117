/**
 * The kernel's switch for FUSE over io_uring (/sys/module/fuse/parameters/enable_uring, root only,
 * N by default). It only matters when a connection sends INIT, so tests turn it on around a
 * server's start and put back what they found, also on failure.
 */
import * as fs from 'node:fs';

export const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

/** 'Y' or 'N', or null when this kernel has no FUSE over io_uring (or this is not root). */
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

/** Why FUSE over io_uring cannot be tested here, or null. */
export function uringSkipReason(): string | null {
  return uringParam() === null ? `${ENABLE_URING} is missing or not writable (Linux 6.14+ with CONFIG_FUSE_IO_URING, as root)` : null;
}

/** Run fn with enable_uring set to value, then restore what was there. */
export async function withUringParam<T>(value: 'Y' | 'N', fn: () => Promise<T>): Promise<T> {
  const old = uringParam();
  if (old === null) throw new Error(uringSkipReason()!);
  fs.writeFileSync(ENABLE_URING, value);
  try {
    return await fn();
  } finally {
    fs.writeFileSync(ENABLE_URING, old);
  }
}
