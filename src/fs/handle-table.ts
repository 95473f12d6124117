import { E, FsError } from '../errors.js';
import type { Dirent } from '../sys/dirent.js';
import type { HandleRecord } from './export-table.js';
import { ROOT_ID } from './filesystem.js';
import type { Inode } from './inode-store.js';

/** An open file or directory the client holds (a FUSE fh). Its fd lives in the FdCache as `fdKey`. */
export interface OpenHandle {
  fh: bigint;
  inode: Inode;
  kind: 'file' | 'dir';
  /** the flags to reopen with after eviction: never O_CREAT, O_EXCL or O_TRUNC */
  flags: number;
  fdKey: string;
  /** a lock was taken through this handle: its fd is pinned until release */
  locked: boolean;
  /** FUSE passthrough: the kernel's backing id for this open file (it reads and writes it itself) */
  backingId: number | null;
  /** POSIX lock owners that took locks through this fh: a FLUSH from one of them drops the locks */
  lockOwners: Set<bigint> | null;
  /** directory cursor: entries read from the host but not yet sent, resuming at `pendingFrom` */
  pending: Dirent[];
  pendingIdx: number;
  pendingFrom: bigint;
  /** the fd's position is known to be right after `pending` (false after eviction or seek) */
  cursorValid: boolean;
  /** READDIRPLUS entries of this directory reached as inodes the server knew, and those it did not (Dirs.readdirplus) */
  plusKnown: number;
  plusUnknown: number;
}

/**
 * An open handle of `inode` a successor worker can take over (reopening it on first use): the
 * root's (the successor has its own root fd), or one of an inode it can reach again by handle or
 * by name. Others (O_TMPFILE, a submount, a file unlinked while open) go with the worker.
 */
export function outlivesWorker(inode: Inode): boolean {
  return inode.nodeid === ROOT_ID || (inode.reopenable && !inode.unlinked);
}

/** fh -> OpenHandle; every fh is checked to belong to its nodeid (virtiofsd find_handle). */
export class HandleTable {
  private readonly map = new Map<bigint, OpenHandle>();
  private readonly byFdKey = new Map<string, OpenHandle>();
  /** handles a predecessor held, restored on first use (see `restore`) */
  private readonly pending = new Map<bigint, { nodeid: bigint; flags: number; kind: 'file' | 'dir' }>();
  private next = 1n;

  /**
   * `resolveInode` brings back the inode of a restored handle (it may have left memory). `onOpen`
   * is told each new handle a successor could reopen (a supervisor keeps them, so that open files
   * outlive a worker that dies). `onSize` is told the number of handles after each one comes or goes.
   */
  constructor(
    private readonly resolveInode: (nodeid: bigint) => Inode,
    private readonly onOpen: ((h: HandleRecord) => void) | null = null,
    private readonly onSize: ((size: number) => void) | null = null,
  ) {}

  get size(): number {
    return this.map.size;
  }

  add(inode: Inode, kind: 'file' | 'dir', flags: number): OpenHandle {
    const h = this.insert(this.next++, inode, kind, flags);
    if (this.onOpen && outlivesWorker(inode)) this.onOpen({ fh: h.fh, nodeid: inode.nodeid, flags, kind });
    return h;
  }

  private insert(fh: bigint, inode: Inode, kind: 'file' | 'dir', flags: number): OpenHandle {
    const h: OpenHandle = {
      fh, inode, kind, flags, fdKey: `f${fh}`, locked: false, lockOwners: null, backingId: null,
      pending: [], pendingIdx: 0, pendingFrom: -1n, cursorValid: false, plusKnown: 0, plusUnknown: 0,
    };
    this.map.set(fh, h);
    this.byFdKey.set(h.fdKey, h);
    inode.opens++;
    if (kind === 'file') inode.openFile = h;
    this.onSize?.(this.map.size);
    return h;
  }

  /** A predecessor's open handle: it becomes live (without an fd: reopened on use) when first named. */
  restore(fh: bigint, nodeid: bigint, flags: number, kind: 'file' | 'dir'): void {
    if (this.map.has(fh)) return;
    this.pending.set(fh, { nodeid, flags, kind });
    if (fh >= this.next) this.next = fh + 1n;
  }

  /** The handle `fh` of node `nodeid`, or EBADF (unknown fh, or one that belongs to another node). */
  get(fh: bigint, nodeid: bigint, kind?: 'file' | 'dir'): OpenHandle {
    let h = this.map.get(fh);
    if (!h) {
      const p = this.pending.get(fh);
      if (p && p.nodeid === nodeid) {
        this.pending.delete(fh);
        h = this.insert(fh, this.resolveInode(nodeid), p.kind, p.flags);
      }
    }
    if (!h || h.inode.nodeid !== nodeid || (kind && h.kind !== kind)) throw new FsError(E.EBADF, 'unknown file handle');
    return h;
  }

  byKey(fdKey: string): OpenHandle | undefined {
    return this.byFdKey.get(fdKey);
  }

  remove(h: OpenHandle): void {
    if (this.map.get(h.fh) !== h) return;
    this.map.delete(h.fh);
    this.byFdKey.delete(h.fdKey);
    h.inode.opens--;
    if (h.inode.openFile === h) h.inode.openFile = null;
    this.onSize?.(this.map.size);
  }

  *forInode(inode: Inode): IterableIterator<OpenHandle> {
    for (const h of this.map.values()) if (h.inode.is(inode)) yield h;
  }

  *all(): IterableIterator<OpenHandle> {
    yield* this.map.values();
  }

  /** Handles restored from a predecessor and not used yet. */
  *pendingRecords(): IterableIterator<{ fh: bigint; nodeid: bigint; flags: number; kind: 'file' | 'dir' }> {
    for (const [fh, p] of this.pending) yield { fh, ...p };
  }
}
