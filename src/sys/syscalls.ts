/**
 * The typed syscall surface of handlefs: the addon (`sys`), the constants and record decoders, and
 * a few helpers that only combine a syscall with its decoder. No policy lives here: callers decide
 * flags, confinement and error handling. Addon errors already carry a positive `.errno`, `.code`
 * and `.syscall`, the shape `FsError` expects.
 */
import { loadAddon } from './binding.js';
import { STATX_BASIC_STATS, STATX_BTIME, STATX_MNT_ID } from './constants.js';
import type { NativeAddon } from './native.js';
import { decodeStat, decodeStatfs, STAT_LEN, STATFS_LEN, type Stat, type StatFs } from './stat.js';

export * from './constants.js';
export * from './stat.js';
export * from './dirent.js';
export type { FileHandleRaw, FlockRaw, MappedSeg, NativeAddon, RecvMsgResult } from './native.js';

/** The addon, loaded once. */
export const sys: NativeAddon = loadAddon();

/** statx mask used by statAt: everything stat(2) has plus birth time and mount id. */
const STAT_AT_MASK = STATX_BASIC_STATS | STATX_BTIME | STATX_MNT_ID;

// Scratch records: the addon fills them synchronously and they are decoded before returning.
const statScratch = new BigUint64Array(STAT_LEN);
const statfsScratch = new BigUint64Array(STATFS_LEN);

/** statx(dirfd, name, flags, STAT_AT_MASK), decoded. Use an empty name with AT_EMPTY_PATH for the fd itself. */
export function statAt(dirfd: number, name: Buffer, flags: number): Stat {
  sys.statx(dirfd, name, flags, STAT_AT_MASK, statScratch);
  return decodeStat(statScratch);
}

/** fstatfs(fd), decoded. */
export function statfsFd(fd: number): StatFs {
  sys.fstatfs(fd, statfsScratch);
  return decodeStatfs(statfsScratch);
}

/** "/proc/self/fd/N": the path form of an fd, for syscalls without an fd variant usable on O_PATH fds. */
export function procFdPath(fd: number): Buffer {
  return Buffer.from(`/proc/self/fd/${fd}`);
}
