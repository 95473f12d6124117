/**
 * The typed syscall surface of handlefs: the addon (`sys`), the constants and record decoders, and
 * a few helpers that only combine a syscall with its decoder. No policy lives here: callers decide
 * flags, confinement and error handling. Addon errors already carry a positive `.errno`, `.code`
 * and `.syscall`, the shape `FsError` expects.
 */
import { loadAddon } from './binding.js';
import { AT_FDCWD, MAX_HANDLE_SZ, O_CLOEXEC, O_DIRECTORY, O_PATH, STATX_BASIC_STATS, STATX_BTIME, STATX_MNT_ID } from './constants.js';
import type { FileHandleRaw, NativeAddon } from './native.js';
import { decodeStat, decodeStatfs, STAT_LEN, STATFS_LEN, type Stat, type StatFs } from './stat.js';

export * from './constants.js';
export * from './stat.js';
export * from './dirent.js';
export type { FileHandleRaw, FlockRaw, MappedSeg, NativeAddon, RecvMsgResult, RingHandle } from './native.js';

/** The addon, loaded once; nameToHandleAt(Try) are made here (handleRecord). */
export const sys: NativeAddon = loadAddon();
sys.nameToHandleAtTry = (dirfd, name, flags) => {
  const r = sys.nameToHandleInto(dirfd, name, flags, handleScratch);
  return r < 0 ? r : handleRecord();
};
sys.nameToHandleAt = (dirfd, name, flags) => {
  const h = sys.nameToHandleAtTry(dirfd, name, flags);
  return typeof h === 'number' ? sys.throwErrno(-h, 'name_to_handle_at') : h;
};

/** statx mask used by statAt: everything stat(2) has plus birth time and mount id. */
const STAT_AT_MASK = STATX_BASIC_STATS | STATX_BTIME | STATX_MNT_ID;

// Scratch records: the addon fills them synchronously and they are decoded before returning.
const statScratch = new BigUint64Array(STAT_LEN);
const statfsScratch = new BigUint64Array(STATFS_LEN);

/** nameToHandleInto's record (see native.d.ts), reused by every call */
const handleScratch = Buffer.alloc(16 + MAX_HANDLE_SZ);
/** the last mount id read, as a bigint: nearly every handle is of the share's one mount */
let mountLo = -1, mountHi = -1, mountId = 0n;

/**
 * The FileHandleRaw of the record nameToHandleInto just wrote. Built here rather than in the
 * addon: napi_set_named_property internalizes each key string per call, and with the object and
 * a malloc'd Buffer that was two thirds of a name_to_handle_at's cost (perf, cold find). The bytes
 * are a copy (a small pooled Buffer).
 */
function handleRecord(): FileHandleRaw {
  const b = handleScratch;
  const n = b.readUInt32LE(4);
  const lo = b.readUInt32LE(8), hi = b.readUInt32LE(12);
  if (lo !== mountLo || hi !== mountHi) {
    mountLo = lo;
    mountHi = hi;
    mountId = b.readBigUInt64LE(8);
  }
  const bytes = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) bytes[i] = b[16 + i]!;
  return { type: b.readInt32LE(0), bytes, mountId };
}

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

/** /proc/self/fd, held open once the process is chrooted (enterChroot): its root has no /proc. */
let procFds: number | null = null;
/** the chroot's root (the cwd between path-form calls) */
let chrootFd: number | null = null;

/**
 * The path form of an fd, for syscalls without an fd variant usable on O_PATH fds: with dirfd
 * procFdDir(), "/proc/self/fd/N" (AT_FDCWD), or "N" in the /proc/self/fd held open once chrooted.
 */
export function procFdPath(fd: number): Buffer {
  return Buffer.from(procFds === null ? `/proc/self/fd/${fd}` : String(fd));
}

/** The dirfd procFdPath's paths are relative to. */
export function procFdDir(): number {
  return procFds ?? AT_FDCWD;
}

/**
 * fn on the path form of `fd`, for syscalls that take a path and no dirfd (the *xattr calls):
 * once chrooted, the cwd is /proc/self/fd for the call only (no other code uses relative paths).
 */
export function withProcFdPath<T>(fd: number, fn: (path: Buffer) => T): T {
  if (procFds === null) return fn(procFdPath(fd));
  sys.fchdir(procFds);
  try {
    return fn(procFdPath(fd));
  } finally {
    sys.fchdir(chrootFd!);
  }
}

export function chrooted(): boolean {
  return procFds !== null;
}

const CAP_SYS_CHROOT = 18;

/**
 * chroot(2) into the directory `root` (--sandbox chroot, where namespaces are not allowed), after
 * the process has loaded what it runs. The new root has no /proc: /proc/self/fd stays open for
 * procFdPath. CAP_SYS_CHROOT is dropped after use. Absolute paths name things inside the share
 * from then on.
 */
export function enterChroot(root: Buffer): void {
  const dir = sys.openat(AT_FDCWD, Buffer.from('/proc/self/fd'), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  const rootFd = sys.openat(AT_FDCWD, root, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  try {
    sys.chrootInto(rootFd);
  } catch (e) {
    sys.close(dir);
    sys.close(rootFd);
    throw e;
  }
  procFds = dir;
  chrootFd = rootFd;
  sys.dropCapability(CAP_SYS_CHROOT);
}
