import { constants as osConstants } from 'node:os';
import type { Logger } from 'pino';

const ERRNO = osConstants.errno as Record<string, number>;
const NAMES: Record<number, string> = Object.fromEntries(Object.entries(ERRNO).map(([k, v]) => [v, k]));

/** Name of a positive errno ('ENOENT'), or 'E<n>' when unknown. */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `E${errno}`;
}

/**
 * A failure below the frontends. `errno` is positive, equal to C errno; the sign flips once, at
 * the wire (raw codec writes -errno, fuse-native calls cb(-errno)).
 */
export class FsError extends Error {
  readonly errno: number;
  readonly code: string;
  constructor(errno: number, message?: string) {
    const code = errnoName(errno);
    // An expected answer, not a bug: no stack trace, whose capture would cost more than the
    // syscall that failed (ENOENT of every negative lookup)
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ? `${code}: ${message}` : code);
    Error.stackTraceLimit = limit;
    this.name = 'FsError';
    this.errno = errno;
    this.code = code;
  }
}

const failures = new Map<number, FsError>();

/**
 * The shared FsError of an errno, for an answer returned rather than thrown: the FileSystem
 * methods whose failures are common answers (a LOOKUP of a missing name, a GETXATTR of a missing
 * attribute) resolve to it. A throw through the async frames of a request costs more than the
 * syscall that failed: V8 walks the stack for every throw and rethrow, and Node tracks each
 * rejected promise (about 3 us of a 6 us negative LOOKUP). Frozen: one instance per errno.
 */
export function failure(errno: number): FsError {
  let f = failures.get(errno);
  if (f === undefined) {
    f = Object.freeze(new FsError(errno));
    failures.set(errno, f);
  }
  return f;
}

/** A malformed request on the wire: logged once, answered when the unique is readable. */
export class ProtocolError extends Error {
  constructor(message: string, readonly errno: number = ERRNO.EINVAL!) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * Thrown by a filesystem that does not serve this request on this thread (src/fs/thread-fs.ts):
 * not a failure. The protocol server answers it with DECLINED, and the transport hands the
 * request to the thread that runs the filesystem.
 */
export class Declined {
  readonly declined = true;
}
export const DECLINE: Declined = Object.freeze(new Declined());

export const E = ERRNO as Readonly<Record<string, number>> & {
  EPERM: number; ENOENT: number; EIO: number; EBADF: number; EAGAIN: number; ENOMEM: number; EACCES: number;
  EEXIST: number; EXDEV: number; ENOTDIR: number; EISDIR: number; EINVAL: number; ENFILE: number; EMFILE: number;
  EFBIG: number; ENOSPC: number; EROFS: number; ERANGE: number; ENAMETOOLONG: number; ENOSYS: number;
  ENOTEMPTY: number; ELOOP: number; ENODATA: number; EOPNOTSUPP: number; ESTALE: number; EINTR: number;
  ENOTSUP: number; EOVERFLOW: number; ENOTTY: number; EPROTO: number; ENXIO: number; ENODEV: number;
};

export const fsErr = (errno: number, msg?: string): FsError => new FsError(errno, msg);
export const erofs = (msg?: string): FsError => new FsError(E.EROFS, msg);
export const estale = (msg?: string): FsError => new FsError(E.ESTALE, msg);
export const enosys = (msg?: string): FsError => new FsError(E.ENOSYS, msg);

/**
 * Normalize any thrown value to a positive errno (go-fuse ToStatus). FsError and addon errors
 * carry a positive `.errno`; Node's fs errors carry a negative one and a `.code`. Anything else is
 * a bug: EIO, and one error line with the stack when a logger is given.
 */
export function toErrno(e: unknown, log?: Logger): number {
  if (e && typeof e === 'object') {
    const err = e as { errno?: unknown; code?: unknown };
    if (typeof err.errno === 'number' && err.errno !== 0 && Number.isInteger(err.errno)) {
      return Math.abs(err.errno);
    }
    if (typeof err.code === 'string' && ERRNO[err.code] !== undefined) return ERRNO[err.code]!;
  }
  log?.error({ err: e }, 'unexpected error mapped to EIO');
  return E.EIO;
}
