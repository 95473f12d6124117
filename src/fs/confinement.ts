/**
 * Proofs that what the server is about to use is still beneath the shared root. An fd follows
 * its file, so a directory the host moves out of the share stays reachable through the fd the
 * server holds; every name operation, open and change first proves the fd is inside.
 */
import { E, FsError } from '../errors.js';
import { sys, procFdPath, AT_FDCWD } from '../sys/syscalls.js';
import type { Inode } from './inode-store.js';
import type { Services } from './services.js';

export class Confinement {
  constructor(private readonly s: Services) {}

  /**
   * A directory (or a file about to be opened) must still be beneath the shared root: the
   * kernel's path of the fd (/proc/self/fd/N) must be the root or below it; otherwise ESTALE, and
   * one warning.
   */
  confirmInside(inode: Inode, fd: number): void {
    const s = this.s;
    if (inode === s.root) return;
    // the proof holds until something is renamed on the root's filesystem (MoveWatch); taken
    // before the readlink, so that a rename during it voids the new proof
    const epoch = s.moves.epoch();
    if (epoch >= 0 && inode.proven === epoch) return;
    s.counters.placeChecks++;
    let p: Buffer;
    try {
      p = sys.readlinkat(AT_FDCWD, procFdPath(fd));
    } catch {
      throw new FsError(E.ESTALE, 'cannot place the inode');
    }
    const r = s.rootPath;
    if (p.length > r.length && p[r.length] === 0x2f && p.subarray(0, r.length).equals(r)) {
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
    if (e < 0 || child === this.s.root) return;
    if (parent !== this.s.root && parent.proven !== e) return;
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

  private onRootMount(inode: Inode): boolean {
    return inode.handle !== null && inode.handle.mountId === this.s.root.handle!.mountId;
  }
}
