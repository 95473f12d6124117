/**
 * Record locks and flock. POSIX locks are taken as OFD locks on the fh's own open file
 * description, so that closing another fd of the same inode never drops them; an fh that holds a
 * lock keeps its fd for life (never evicted).
 */
import { E, FsError, toErrno } from '../errors.js';
import { sys, F_RDLCK, F_UNLCK, F_WRLCK, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, SEEK_SET } from '../sys/syscalls.js';
import type { OpenFiles } from './open-files.js';
import type { Services } from './services.js';
import { SHARED_LOCK_OWNERS } from './shared-files.js';
import type { FileLock } from './types.js';

const OFFSET_MAX = 0x7fffffffffffffffn;

export class Locks {
  constructor(private readonly s: Services, private readonly open: OpenFiles) {}

  async getlk(nodeid: bigint, fh: bigint, lock: FileLock): Promise<FileLock> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    const [start, len] = lockRange(lock);
    const r = this.open.with(h, (fd) => sys.ofdGetlk(fd, lock.type, SEEK_SET, start, len));
    if (r.type === F_UNLCK) return { start: 0n, end: 0n, type: F_UNLCK, pid: 0 };
    return { start: BigInt(r.start), end: r.len === 0 ? OFFSET_MAX : BigInt(r.start + r.len - 1), type: r.type, pid: r.pid > 0 ? r.pid : 0 };
  }

  async setlk(nodeid: bigint, fh: bigint, owner: bigint, lock: FileLock, sleep: boolean, isFlock: boolean): Promise<void> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    if (!isFlock && lock.type !== F_UNLCK) {
      (h.lockOwners ??= new Set()).add(owner);
      // from now on a FLUSH of this fh may have locks to drop: served here, not by another thread
      this.s.shared?.files.mark(fh, SHARED_LOCK_OWNERS, true);
    }
    if (lock.type !== F_RDLCK && lock.type !== F_WRLCK && lock.type !== F_UNLCK) throw new FsError(E.EINVAL);
    if (lock.type !== F_UNLCK && !h.locked) {
      // a lock lives on the open file description: that fd must never be closed under it
      h.locked = true;
      this.s.cache.setPermanent(h.fdKey, true);
    }
    await this.open.withAsync(h, async (fd) => {
      if (isFlock) {
        const op = lock.type === F_RDLCK ? LOCK_SH : lock.type === F_WRLCK ? LOCK_EX : LOCK_UN;
        if (sleep && op !== LOCK_UN) await sys.flockWait(fd, op);
        else this.flockNow(fd, op);
        return;
      }
      const [start, len] = lockRange(lock);
      if (sleep && lock.type !== F_UNLCK) await sys.ofdSetlkw(fd, lock.type, SEEK_SET, start, len);
      else sys.ofdSetlk(fd, lock.type, SEEK_SET, start, len);
    });
  }

  /**
   * flock without waiting. Refused: the lock may be held by a file whose RELEASE (which drops
   * it) another serving thread read before this request and has not handed over yet; once the
   * other threads settled, the answer is the host's.
   */
  private flockNow(fd: number, op: number): void {
    try {
      sys.flock(fd, op | LOCK_NB);
    } catch (e) {
      const settle = this.s.opts.settle;
      if (!settle || op === LOCK_UN || toErrno(e) !== E.EAGAIN) throw e;
      settle();
      sys.flock(fd, op | LOCK_NB);
    }
  }
}

/** A FUSE lock range (start, inclusive end) as fcntl's (start, len; 0: to the end). */
function lockRange(lock: FileLock): [number, number] {
  const start = lock.start > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(lock.start);
  if (lock.end >= OFFSET_MAX || lock.end < lock.start) return [start, 0];
  const len = lock.end - lock.start + 1n;
  return [start, len > BigInt(Number.MAX_SAFE_INTEGER) ? 0 : Number(len)];
}
