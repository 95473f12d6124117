/**
 * The owner's side of the files other serving threads create (SharedCreations in shared-files.ts):
 * each posted file is taken in as create() would have left it, under the node id and fh the
 * thread answered with: its inode (parent link, record, O_PATH fd in the cache) with one lookup,
 * and its open file. Taken in on demand: before an unknown node id or fh is refused (Records and
 * HandleTable ask), before a new inode is made of an unknown handle and before a removal or a
 * rename looks at its victim (both after waiting for creations on their way).
 */
import type { Logger } from 'pino';
import type { Entries } from './entries.js';
import { closeQuietly, type Creations, type Services } from './services.js';
import type { CreatedFile, SharedCreations, SharedFileTable } from './shared-files.js';

export class TakeCreations implements Creations {
  /** taking one in looks up its parent and adopts its inode: neither may start another round */
  private taking = false;
  /** files taken in, and those that could not be (their fds closed) */
  taken = 0;
  lost = 0;

  constructor(
    private readonly s: Services,
    private readonly shared: SharedCreations,
    private readonly entries: Entries,
    private readonly log: Logger,
  ) {
    s.records.onMiss = () => this.missed();
    s.handles.onMiss = () => this.missed();
  }

  get busy(): boolean {
    return this.shared.busy;
  }

  settle(wait: boolean): void {
    if (this.taking || !this.shared.busy) return;
    this.taking = true;
    try {
      this.shared.drain((c) => this.take(c), wait);
    } finally {
      this.taking = false;
    }
  }

  private missed(): boolean {
    if (this.taking || !this.shared.busy) return false;
    this.settle(false);
    return true;
  }

  /** Ownership of both fds passes here; a failure closes them (the client's later requests on the file then fail: ESTALE, EBADF). */
  private take(c: CreatedFile): void {
    const s = this.s;
    let fd = c.fd;
    // the creating thread published both fds: withdrawn first (the cache publishes them again as it
    // takes them), so that no failure below closes an fd another thread could still borrow
    if (s.shared) {
      withdraw(s.shared.files, c.fh);
      withdraw(s.shared.inodes, c.nodeid);
    }
    try {
      const parent = s.records.inode(c.parent);
      s.cache.reserve();
      const pathFd = c.pathFd;
      c.pathFd = -1;
      const r = this.entries.adopt(parent, c.name, pathFd, true, undefined, c.nodeid);
      const h = s.handles.adopt(c.fh, r.inode, c.flags);
      s.cache.reserve();
      s.cache.insertPinned(h.fdKey, fd, 'file', false);
      fd = -1;
      s.cache.unpin(h.fdKey, c.fd);
      this.taken++;
    } catch (e) {
      this.lost++;
      if (c.pathFd >= 0) closeQuietly(c.pathFd);
      if (fd >= 0) closeQuietly(fd);
      this.log.warn({ nodeid: String(c.nodeid), code: (e as { code?: string }).code, err: (e as Error).message }, 'a file another serving thread created could not be taken in; its node id is stale');
    }
  }
}

/** Withdraw `key`'s entry, waiting for its borrowers (each is one syscall) to give it back. */
function withdraw(t: SharedFileTable, key: bigint): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (!t.withdraw(key, true)) Atomics.wait(pause, 0, 0, 1);
}
