/**
 * Proofs that what the server is about to use is still beneath the shared root. An fd follows
 * its file, so a directory the host moves out of the share stays reachable through the fd the
 * server holds; every name operation, open and change first proves the fd is inside.
 */
import { E, FsError } from '../errors.js';
import {
  sys, chrooted, procFdDir, procFdPath, statAt, AT_EMPTY_PATH, O_CLOEXEC, O_NOFOLLOW, O_PATH, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
} from '../sys/syscalls.js';

const DELETED = Buffer.from(' (deleted)');
const EMPTY = Buffer.alloc(0);
import type { Inode } from './inode-store.js';
import type { Services } from './services.js';

/** The kernel's path of an fd (readlink of /proc/self/fd/N, not chrooted) is strictly below `root`. */
export function pathBeneath(p: Buffer, root: Buffer): boolean {
  return p.length > root.length && p[root.length] === 0x2f && p.subarray(0, root.length).equals(root);
}

export class Confinement {
  constructor(private readonly s: Services) {}

  /**
   * A directory (or a file about to be opened) must still be beneath the shared root: the
   * kernel's path of the fd (/proc/self/fd/N) must be the root or below it; otherwise ESTALE, and
   * one warning.
   */
  confirmInside(inode: Inode, fd: number): void {
    const s = this.s;
    if (inode.is(s.root)) return;
    // the proof holds until something is renamed on the root's filesystem (MoveWatch); taken
    // before the readlink, so that a rename during it voids the new proof
    const epoch = s.moves.epoch();
    if (epoch >= 0 && inode.proven === epoch) return;
    s.counters.placeChecks++;
    let p: Buffer;
    try {
      p = sys.readlinkat(procFdDir(), procFdPath(fd));
    } catch {
      throw new FsError(E.ESTALE, 'cannot place the inode');
    }
    if (chrooted() ? this.insideChroot(p, fd) : pathBeneath(p, s.rootPath)) {
      // renames are only watched on the root's filesystem: a submount's inodes are proven each time
      if (this.onRootMount(inode)) inode.proven = epoch;
      return;
    }
    s.counters.estale++;
    s.once.warn(`outside-${inode.nodeid}`, { nodeid: String(inode.nodeid) },
      'an inode was moved outside the shared directory behind the server\'s back; refusing it (ESTALE)');
    throw new FsError(E.ESTALE, 'moved outside the shared directory');
  }

  /**
   * A child just reached by one name in `parent` is beneath the root when the parent is (the root
   * itself, or proven at the latest epoch read): it takes the parent's proof, so its first check
   * needs no readlink. Same mount only, as for any kept proof.
   */
  inheritProof(child: Inode, parent: Inode): void {
    const e = this.s.moves.last;
    if (e < 0 || child.is(this.s.root)) return;
    if (!parent.is(this.s.root) && parent.proven !== e) return;
    if (this.onRootMount(child)) child.proven = e;
  }

  /** Borrow a directory's fd to reach names in it, proving it is still inside. Pair with s.fds.release. */
  acquireDir(inode: Inode): number {
    const fd = this.s.fds.acquire(inode);
    try {
      this.confirmInside(inode, fd);
    } catch (e) {
      this.s.fds.release(inode, fd);
      throw e;
    }
    return fd;
  }

  /** Run fn with a proven directory fd. */
  withDir<T>(inode: Inode, fn: (fd: number) => T): T {
    const fd = this.acquireDir(inode);
    try {
      return fn(fd);
    } finally {
      this.s.fds.release(inode, fd);
    }
  }

  /**
   * Chrooted (--sandbox chroot), the kernel's path of an fd inside the share reads from the share
   * ("/a/b"), but one outside it reads from the real root, which may read the same: a client can
   * make any path inside the share. The path counts only when it resolves, beneath the root and
   * following nothing, to the very inode of the fd. An unlinked file (" (deleted)") has no path
   * to check; it is taken as inside.
   */
  private insideChroot(p: Buffer, fd: number): boolean {
    if (p.length < 2 || p[0] !== 0x2f) return false;
    if (p.subarray(p.length - DELETED.length).equals(DELETED)) return true;
    let there: number;
    try {
      there = sys.openat2(this.s.rootPathFd, p.subarray(1), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    } catch {
      return false;
    }
    try {
      const a = statAt(there, EMPTY, AT_EMPTY_PATH);
      const b = statAt(fd, EMPTY, AT_EMPTY_PATH);
      return a.devMajor === b.devMajor && a.devMinor === b.devMinor && a.ino === b.ino;
    } finally {
      sys.close(there);
    }
  }

  private onRootMount(inode: Inode): boolean {
    const m = inode.mountId;
    return m !== null && m === this.s.root.mountId;
  }
}
