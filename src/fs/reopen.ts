import type { Logger } from 'pino';
import { E, FsError } from '../errors.js';
import { sameHandle, type FileHandle } from '../handle/file-handle.js';
import type { Sealer } from '../handle/seal.js';
import {
  sys, AT_EMPTY_PATH, O_CLOEXEC, O_NOFOLLOW, O_PATH, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, S_IFDIR,
} from '../sys/syscalls.js';
import type { FdCache } from './fd-cache.js';
import type { Inode } from './inode-store.js';

const EMPTY = Buffer.alloc(0);
const DOTDOT = Buffer.from('..');
/** deepest parent chain the by-path reopen walks (a deeper tree gives ESTALE) */
export const MAX_DEPTH = 4096;

export interface ReopenCounters {
  reopenByPath: number;
  reopenByHandle: number;
  estale: number;
  sealFailures: number;
  resurrected: number;
}

/**
 * Hands out inode O_PATH fds from the FdCache and reopens evicted ones:
 * - by handle (open_by_handle_at, needs CAP_DAC_READ_SEARCH): directories are then proven to be
 *   beneath the root by walking '..' (open_by_handle_at is not confinement);
 * - by path: re-walk the parent chain beneath the root with openat2(RESOLVE_BENEATH |
 *   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), then compare the handle of what was opened with
 *   the stored one, byte for byte. A mismatch is the host renaming or replacing it behind our
 *   back: ESTALE, never the wrong file.
 * Every reopen first verifies the inode's seal, when it has one (a handle the server got itself
 * and holds in memory has none until its record leaves memory: records.ts sealOf).
 */
export class InodeFds {
  constructor(
    private readonly cache: FdCache,
    private readonly sealer: Sealer,
    readonly strategy: 'handle' | 'path',
    /** a real (not O_PATH) fd of the shared root: open_by_handle_at's mount fd */
    private readonly mountFd: number,
    private readonly rootHandle: FileHandle,
    /** flags for name_to_handle_at (AT_HANDLE_MNT_ID_UNIQUE when the kernel has it) */
    private readonly handleFlags: number,
    private readonly log: Logger,
    /** the root inode and its O_PATH fd: outside the cache, never evicted */
    private readonly rootNode: Inode,
    private readonly rootFd: number,
    /** the filesystem's counters (the services record owns them; reopens count here) */
    private readonly counters: ReopenCounters,
  ) {}

  /** Borrow the inode's O_PATH fd, reopening it if it was evicted. Pair with release(). */
  acquire(inode: Inode, depth = 0): number {
    if (inode.is(this.rootNode)) return this.rootFd;
    const fd = this.cache.pin(inode.fdKey);
    if (fd !== undefined) return fd;
    return this.reopen(inode, depth);
  }

  release(inode: Inode, fd: number): void {
    if (inode.is(this.rootNode)) return;
    this.cache.unpin(inode.fdKey, fd);
  }

  with<T>(inode: Inode, fn: (fd: number) => T): T {
    const fd = this.acquire(inode);
    try {
      return fn(fd);
    } finally {
      this.release(inode, fd);
    }
  }

  private stale(inode: Inode, why: string): FsError {
    this.counters.estale++;
    this.log.debug({ nodeid: String(inode.nodeid), why }, 'reopen failed: stale');
    return new FsError(E.ESTALE, why);
  }

  private reopen(inode: Inode, depth: number): number {
    const h = inode.handle;
    if (!inode.reopenable || !h) throw this.stale(inode, 'inode cannot be reopened');
    if (depth > MAX_DEPTH) throw this.stale(inode, 'parent chain too deep');
    // A seal failure is a bug or tampering: never open from an unverified handle.
    const seal = inode.seal;
    if (seal && !this.sealer.verify(h.type, h.bytes, seal)) {
      this.counters.sealFailures++;
      this.log.error({ nodeid: String(inode.nodeid) }, 'file handle seal does not verify; refusing to reopen (tampering or a bug)');
      throw this.stale(inode, 'seal');
    }
    // open_by_handle_at opens whatever the handle names, wherever it is now: for a directory the
    // '..' walk then proves it is beneath the root, but a non-directory has no reliable way up, so
    // it is always re-walked by name from its (proven) parent
    return this.strategy === 'handle' && inode.type === S_IFDIR ? this.reopenByHandle(inode, h) : this.reopenByPath(inode, h, depth);
  }

  private reopenByHandle(inode: Inode, h: FileHandle): number {
    this.cache.reserve();
    let fd: number;
    try {
      fd = this.cache.opened(() => sys.openByHandleAt(this.mountFd, h.type, h.bytes, O_PATH | O_CLOEXEC));
    } catch (e) {
      if ((e as { code?: string }).code === 'ESTALE') throw this.stale(inode, 'handle no longer valid');
      throw e;
    }
    try {
      if (!this.beneathRoot(fd)) {
        sys.close(fd);
        this.log.warn({ nodeid: String(inode.nodeid) }, 'directory moved outside the shared directory; refusing it');
        throw this.stale(inode, 'outside the shared directory');
      }
    } catch (e) {
      if (!(e instanceof FsError)) sys.close(fd);
      throw e;
    }
    this.counters.reopenByHandle++;
    this.cache.insertPinned(inode.fdKey, fd, 'path');
    return fd;
  }

  /** Walk '..' from a directory fd until the root's handle (true) or the filesystem's top (false). */
  private beneathRoot(dirFd: number): boolean {
    let cur = this.cache.opened(() => sys.fcntlInt(dirFd, 1030 /* F_DUPFD_CLOEXEC */, 0));
    try {
      for (let i = 0; i <= MAX_DEPTH; i++) {
        const h = sys.nameToHandleAt(cur, EMPTY, AT_EMPTY_PATH | this.handleFlags);
        if (sameHandle(h, this.rootHandle) && h.mountId === this.rootHandle.mountId) return true;
        // ENOENT: the directory is not connected to the root of the mount we hold (the share is
        // a bind, e.g. in the sandbox, and the directory left its subtree): outside
        const up = this.cache.opened(() => sys.openatTry(cur, DOTDOT, O_PATH | O_CLOEXEC, 0));
        if (up === -E.ENOENT) return false;
        if (up < 0) throw new FsError(-up, 'reopen: .. of a directory');
        const hu = sys.nameToHandleAt(up, EMPTY, AT_EMPTY_PATH | this.handleFlags);
        sys.close(cur);
        cur = up;
        if (sameHandle(hu, h)) return false; // '..' of the top is itself
      }
      return false;
    } finally {
      sys.close(cur);
    }
  }

  /**
   * Open an inode known only by its (already verified) record: a directory by handle when allowed,
   * then proven beneath the root; anything else by name beneath its parent. The handle of what was
   * opened must equal the record's. Returns an fd the caller owns.
   */
  openRecord(parent: Inode, name: Buffer, handle: FileHandle, type: number): number {
    if (type === S_IFDIR && this.strategy === 'handle') {
      this.cache.reserve();
      let fd: number;
      try {
        fd = this.cache.opened(() => sys.openByHandleAt(this.mountFd, handle.type, handle.bytes, O_PATH | O_CLOEXEC));
      } catch (e) {
        if ((e as { code?: string }).code === 'ESTALE') { this.counters.estale++; throw new FsError(E.ESTALE, 'handle no longer valid'); }
        throw e;
      }
      let inside = false;
      try {
        inside = this.beneathRoot(fd);
      } finally {
        if (!inside) sys.close(fd);
      }
      if (!inside) {
        this.counters.estale++;
        this.log.warn({ name: name.toString() }, 'a persistent handle names a directory outside the shared directory; refused');
        throw new FsError(E.ESTALE, 'outside the shared directory');
      }
      return fd;
    }
    return this.walkBeneath(parent, name, handle, 0, 'record');
  }

  private reopenByPath(inode: Inode, h: FileHandle, depth: number): number {
    const parent = inode.parent;
    const name = inode.name;
    if (!parent || !name) throw this.stale(inode, 'no parent link');
    const fd = this.walkBeneath(parent, name, h, depth + 1, 're-walk');
    this.counters.reopenByPath++;
    this.cache.insertPinned(inode.fdKey, fd, 'path');
    return fd;
  }

  /**
   * Open `name` beneath `parent` (one component, no symlink, no magic link, no '..') and prove it
   * is the file `handle` names, byte for byte. ENOENT/ENOTDIR/ELOOP/EXDEV or another handle: the
   * host renamed or replaced it behind our back, ESTALE. Returns an fd the caller owns.
   */
  private walkBeneath(parent: Inode, name: Buffer, handle: FileHandle, depth: number, what: string): number {
    const parentFd = this.acquire(parent, depth);
    let fd: number;
    try {
      this.cache.reserve();
      try {
        fd = this.cache.opened(() => sys.openat2(parentFd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS));
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EXDEV') {
          this.counters.estale++;
          throw new FsError(E.ESTALE, `${what}: ${code}`);
        }
        throw e;
      }
    } finally {
      this.release(parent, parentFd);
    }
    try {
      const h = sys.nameToHandleAt(fd, EMPTY, AT_EMPTY_PATH | this.handleFlags);
      if (!sameHandle(h, handle) || (handle.mountId !== 0n && h.mountId !== handle.mountId)) {
        this.counters.estale++;
        throw new FsError(E.ESTALE, `${what}: identity mismatch`);
      }
    } catch (e) {
      sys.close(fd);
      throw e;
    }
    return fd;
  }

}
