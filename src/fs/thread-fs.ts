/**
 * The filesystem as a serving thread other than its owner sees it, through the fds the owner
 * published (SharedFds): GETATTR, STATX, READLINK, GETXATTR and SETATTR (but a size) of an inode, a LOOKUP whose name is not there
 * or names an inode the owner knows under that parent link (SharedInodes, the owner's table in shared memory),
 * UNLINK and RMDIR while the owner keeps no books on their victims (SharedRemovalGate),
 * reads, writes, fsyncs and FLUSHes of an open file, done here as the owner does them (fstat,
 * readlinkat, NowaitIo, O_APPEND, FUSE_WRITE_KILL_SUIDGID, the same proof that a directory is
 * beneath the root). Everything else, and an fd the owner has not published (evicted, a
 * directory's open fd, a FLUSH that must drop locks), is declined: the thread hands the request to
 * the owner, which answers it on this thread's channel.
 */
import { DECLINE, E, failure, FsError } from '../errors.js';
import {
  sys, statAt, procFdDir, procFdPath, AT_EMPTY_PATH, AT_NO_AUTOMOUNT, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, O_APPEND, S_IFDIR, S_IFLNK, S_IFMT, XATTR_SIZE_MAX,
} from '../sys/syscalls.js';
import { killSuidgid, setModeOwner, setTimes } from './attrs.js';
import { pathBeneath } from './confinement.js';
import { NowaitIo } from './data-io.js';
import { ROOT_ID, type FileSystem } from './filesystem.js';
import type { MoveWatch } from './move-watch.js';
import { checkName, isDotName } from './names.js';
import { EMPTY, devOf, statToAttr, type FsCounters } from './services.js';
import type { SharedInodes } from './shared-inodes.js';
import { SHARED_LOCK_OWNERS, SHARED_ROOT_MOUNT, type SharedFds, type SharedFile, type SharedFileTable, type SharedRemovalGate } from './shared-files.js';
import {
  FATTR_ATIME, FATTR_ATIME_NOW, FATTR_CTIME, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_LOCKOWNER, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW, FATTR_UID,
  WRITE_KILL_SUIDGID, type AttrReply, type Context, type Entry, type InitOptions, type SetattrIn, type XattrReply,
} from './types.js';
import { checkXattrName } from './xattrs.js';

/** What a serving thread's filesystem is built with. */
export interface ThreadFsSettings {
  /** the cache policy's attribute timeout, which is its entry timeout too (the owner's Services.timeout) */
  attrTimeoutMs: number;
  /**
   * The shared root's real path, as the owner's proofs compare with (Services.rootPath); null where
   * /proc/self/fd cannot prove a place (a chrooted process): every LOOKUP is then the owner's.
   */
  rootPath: Uint8Array | null;
  /**
   * The owner's GETXATTR is the host's getxattr of the same name (extended attributes on, no
   * --xattrmap, no id translation): only then does this thread answer it.
   */
  plainXattrs: boolean;
  /** the root's mount id: the inode table is keyed by handles on it */
  rootMount: bigint;
  /** name_to_handle_at's flags, as the owner makes handles (they decide the mount id) */
  handleFlags: number;
}

/** What this thread did: requests it answered from the table, and the ones it declined. */
export interface ThreadFsCounters {
  served: number;
  declined: number;
  /** LOOKUPs answered ENOENT here (in `served` too) */
  negativeLookups: number;
  /** LOOKUPs of inodes the owner knows, answered and counted here (in `served` too) */
  positiveLookups: number;
  /** UNLINKs and RMDIRs done here, whatever their answer (in `served` too) */
  removals: number;
}

/** proofs kept at once (ThreadFiles.inside): past this many, they are dropped and made again */
const PROVEN_MAX = 65_536;

/** the SETATTR bits a serving thread answers (ThreadFiles.setattr) */
const SETATTR_HERE = FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW
  | FATTR_FH | FATTR_LOCKOWNER | FATTR_CTIME | FATTR_KILL_SUIDGID;

class ThreadFiles {
  private readonly io: NowaitIo;
  private killPrivV2 = false;
  private readonly f: SharedFile = { fd: -1, flags: 0, dev: 0, marks: 0 };
  readonly counters: ThreadFsCounters = { served: 0, declined: 0, negativeLookups: 0, positiveLookups: 0, removals: 0 };

  private readonly table: SharedFileTable;
  private readonly inodes: SharedFileTable;
  private readonly removals: SharedRemovalGate;
  private readonly attrTimeoutMs: number;
  private readonly rootPath: Buffer | null;
  private readonly plainXattrs: boolean;
  private readonly rootMount: bigint;
  private readonly handleFlags: number;
  /** node ids proven beneath the root at moves' epoch provenEpoch (inside) */
  private readonly proven = new Set<bigint>();
  private provenEpoch = -1;

  constructor(
    tables: SharedFds, private readonly fsCounters: FsCounters, settings: ThreadFsSettings, private readonly moves: MoveWatch | null,
    private readonly known: SharedInodes | null,
  ) {
    this.table = tables.files;
    this.inodes = tables.inodes;
    this.removals = tables.removals;
    this.io = new NowaitIo(fsCounters);
    this.attrTimeoutMs = settings.attrTimeoutMs;
    this.rootPath = settings.rootPath ? Buffer.from(settings.rootPath) : null;
    this.plainXattrs = settings.plainXattrs;
    this.rootMount = settings.rootMount;
    this.handleFlags = settings.handleFlags;
  }

  /**
   * GETXATTR through /proc/self/fd/N of the inode's published O_PATH fd, as the owner reads it
   * (Xattrs.byPath), after the same proof of place: the kernel asks for security.capability before
   * the first write of every new file. Declined unless the owner's answer is the host's own
   * (ThreadFsSettings.plainXattrs), or for an unpublished inode.
   */
  async getxattr(_ctx: Context, nodeid: bigint, name: Buffer, size: number): Promise<XattrReply | FsError> {
    if (!this.plainXattrs || this.rootPath === null) this.decline();
    checkXattrName(name);
    const slot = this.inodes.borrow(nodeid, nodeid);
    if (slot < 0) this.decline();
    const buf = size === 0 ? null : Buffer.allocUnsafe(Math.min(size, XATTR_SIZE_MAX));
    let n: number;
    try {
      const { fd } = this.inodes.fileAt(slot, this.f);
      if (!this.inside(nodeid, fd)) this.decline();
      n = sys.getxattrTry(procFdPath(fd), name, buf);
    } finally {
      this.inodes.release(slot);
    }
    this.counters.served++;
    if (n < 0) return failure(-n);
    return buf === null ? { size: n } : { value: buf.subarray(0, n) };
  }

  /**
   * LOOKUP in a published directory, proven beneath the root as the owner proves it
   * (Confinement.confirmInside's path check), or an answer about a directory the host moved out
   * would be told:
   * - a name that is not there: ENOENT from here, the commonest lookup of a create or an untar;
   * - a name of an inode the owner knows under this very parent link (SharedInodes.find): the
   *   owner's LOOKUP fast path (Entries.lookupKnown) done here, name_to_handle_at and statx by
   *   name, the statx matching the inode's recorded ino, device and type (or the name changed
   *   between the two calls), and its lookup counted in the table's lookup word.
   * '.', '..', an unpublished parent, an unknown inode, another parent link or name (the owner
   * learns names), a change in whether it has other links, a submount, a failed proof or any other
   * error: the owner's.
   */
  async lookup(_ctx: Context, parentId: bigint, name: Buffer): Promise<Entry | FsError> {
    // the owner's answers to a bad name (EINVAL, ENAMETOOLONG)
    checkName(name, true);
    if (isDotName(name) || this.rootPath === null) this.decline();
    const slot = this.inodes.borrow(parentId, parentId);
    if (slot < 0) this.decline();
    let absent = false;
    let entry: Entry | null = null;
    try {
      const { fd, flags: type } = this.inodes.fileAt(slot, this.f);
      if (type !== S_IFDIR) this.decline();
      const h = sys.nameToHandleAtTry(fd, name, this.handleFlags);
      if (typeof h === 'number') {
        // proven after the look, before the answer: a directory moved out in between is refused
        absent = h === -E.ENOENT && this.inside(parentId, fd);
      } else if (this.known !== null && h.mountId === this.rootMount) {
        entry = this.lookupKnown(parentId, fd, name, h.type, h.bytes);
      }
    } finally {
      this.inodes.release(slot);
    }
    if (entry !== null) {
      this.counters.served++;
      this.counters.positiveLookups++;
      return entry;
    }
    if (!absent) this.decline();
    this.counters.served++;
    this.counters.negativeLookups++;
    return failure(E.ENOENT);
  }

  /** The entry of a known inode found by its handle (lookup), its lookup counted; null: the owner's. */
  private lookupKnown(parentId: bigint, dirFd: number, name: Buffer, type: number, bytes: Buffer): Entry | null {
    const found = this.known!.find(type, bytes, Number(parentId), name, Number(ROOT_ID));
    if (found === null) return null;
    let st;
    try {
      st = statAt(dirFd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT);
    } catch {
      return null;
    }
    if (st.ino !== found.ino || devOf(st) !== found.dev || (st.mode & S_IFMT) !== found.type) return null;
    // the owner keeps count of inodes with other names (SharedRemovalGate): it sees that change
    if (found.type !== S_IFDIR && st.nlink > 1 !== found.multiLinked) return null;
    // proven after the look; counted last, only if the slot still holds that inode
    if (!this.inside(parentId, dirFd) || !this.known!.count(found)) return null;
    return {
      nodeid: BigInt(found.nodeid), generation: found.generation, attr: statToAttr(st), entryTimeoutMs: this.attrTimeoutMs, attrTimeoutMs: this.attrTimeoutMs,
    };
  }

  async unlink(_ctx: Context, parentId: bigint, name: Buffer): Promise<void> {
    this.remove(parentId, name, 0);
  }

  async rmdir(_ctx: Context, parentId: bigint, name: Buffer): Promise<void> {
    this.remove(parentId, name, AT_REMOVEDIR);
  }

  /**
   * UNLINK or RMDIR as the owner does it when it keeps no books on the victim (Entries.removeName):
   * the host's unlinkat in the published parent, proven beneath the root first. Only while the
   * owner has no open file and no inode with other names (the gate): then the owner would not look
   * at the victim either. The owner watching, an unpublished parent or a failed proof: the owner's.
   */
  private remove(parentId: bigint, name: Buffer, flags: number): void {
    // the owner's answers to a bad name
    checkName(name);
    if (this.rootPath === null || !this.removals.enter()) this.decline();
    try {
      const slot = this.inodes.borrow(parentId, parentId);
      if (slot < 0) this.decline();
      try {
        const { fd, flags: type } = this.inodes.fileAt(slot, this.f);
        if (type !== S_IFDIR || !this.inside(parentId, fd)) this.decline();
        this.counters.served++;
        this.counters.removals++;
        sys.unlinkat(fd, name, flags);
      } finally {
        this.inodes.release(slot);
      }
    } finally {
      this.removals.leave();
    }
  }

  /**
   * The published inode `nodeid` (its fd `fd`, just borrowed: this.f holds its marks) is the root
   * or beneath it: the kernel's path of the fd is below the root (a failure to read it proves
   * nothing). As the owner does (Confinement.confirmInside), a proof is kept until something is
   * renamed on the root's filesystem, by this thread's own MoveWatch (the queue is read before
   * every use of a kept proof); only for an inode the owner marked as on the root's mount
   * (SHARED_ROOT_MOUNT: renames are watched there only). A node id names one inode for the
   * server's life, so the proof is kept by node id.
   */
  private inside(nodeid: bigint, fd: number): boolean {
    if (nodeid === ROOT_ID) return true;
    let epoch = -1;
    if (this.moves !== null && this.f.marks & SHARED_ROOT_MOUNT) {
      // read before the readlink, so that a rename during it voids the new proof
      epoch = this.moves.epoch();
      if (epoch !== this.provenEpoch) {
        this.proven.clear();
        this.provenEpoch = epoch;
      }
      if (epoch >= 0 && this.proven.has(nodeid)) return true;
    }
    this.fsCounters.placeChecks++;
    let beneath: boolean;
    try {
      beneath = pathBeneath(sys.readlinkat(procFdDir(), procFdPath(fd)), this.rootPath!);
    } catch {
      return false;
    }
    if (beneath && epoch >= 0) {
      if (this.proven.size >= PROVEN_MAX) this.proven.clear();
      this.proven.add(nodeid);
    }
    return beneath;
  }

  /**
   * SETATTR of mode, owner and times (chmod, chown, utimes: what an untar does to each file it
   * writes) through the inode's published O_PATH fd, after the owner's proof of place, with the
   * owner's calls (setModeOwner, setTimes); the attributes after. A size (a truncate opens the file
   * for writing), any bit this does not know, or an fh this thread cannot see is the owner's.
   * LOCKOWNER and CTIME change nothing the owner does either, nor does KILL_SUIDGID without a size
   * (the kernel sends it with every chown: the host's chown clears the bits itself).
   */
  async setattr(_ctx: Context, nodeid: bigint, a: SetattrIn): Promise<AttrReply> {
    if (this.rootPath === null || a.valid & ~SETATTR_HERE) this.decline();
    // an fh the owner would check (an open file of this node): one this thread can see, or the owner's
    if (a.valid & FATTR_FH && a.fh !== 0n) {
      const f = this.table.borrow(a.fh, nodeid);
      if (f < 0) this.decline();
      this.table.release(f);
    }
    const slot = this.inodes.borrow(nodeid, nodeid);
    if (slot < 0) this.decline();
    try {
      const { fd } = this.inodes.fileAt(slot, this.f);
      // a change of something the host moved out of the share would change the outside
      if (!this.inside(nodeid, fd)) this.decline();
      this.counters.served++;
      setModeOwner(fd, a);
      setTimes(fd, a);
      return { attr: statToAttr(statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)), attrTimeoutMs: this.attrTimeoutMs };
    } finally {
      this.inodes.release(slot);
    }
  }

  /** STATX is answered as GETATTR, as the owner does (PassthroughFs.statx). */
  async statx(ctx: Context, nodeid: bigint, fh: bigint | undefined): Promise<AttrReply> {
    return this.getattr(ctx, nodeid, fh);
  }

  /** An inode's attributes through its O_PATH fd, or an open file's through its fd (FUSE_GETATTR_FH). */
  async getattr(_ctx: Context, nodeid: bigint, fh?: bigint): Promise<AttrReply> {
    const byFile = fh !== undefined && fh !== 0n;
    const t = byFile ? this.table : this.inodes;
    const slot = t.borrow(byFile ? fh : nodeid, nodeid);
    if (slot < 0) this.decline();
    try {
      this.counters.served++;
      const st = statAt(t.fileAt(slot, this.f).fd, EMPTY, byFile ? AT_EMPTY_PATH : AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      return { attr: statToAttr(st), attrTimeoutMs: this.attrTimeoutMs };
    } finally {
      t.release(slot);
    }
  }

  async readlink(_ctx: Context, nodeid: bigint): Promise<Buffer> {
    const slot = this.inodes.borrow(nodeid, nodeid);
    if (slot < 0) this.decline();
    try {
      this.counters.served++;
      const { fd, flags: type } = this.inodes.fileAt(slot, this.f);
      if (type !== S_IFLNK) throw new FsError(E.EINVAL);
      return sys.readlinkat(fd, EMPTY);
    } finally {
      this.inodes.release(slot);
    }
  }

  async init(opts: InitOptions): Promise<void> {
    this.killPrivV2 = opts.killPrivV2;
  }

  async destroy(): Promise<void> {
    /* the owner releases every fd */
  }

  async read(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, size: number, into?: Buffer): Promise<Buffer> {
    const slot = this.borrow(fh, nodeid);
    try {
      if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
      this.counters.served++;
      const { fd, dev } = this.table.fileAt(slot, this.f);
      const buf = into && into.length >= size ? into : Buffer.allocUnsafe(size);
      const n = await this.io.read(fd, buf, size, offset, dev);
      return n === size ? buf : buf.subarray(0, n);
    } finally {
      this.table.release(slot);
    }
  }

  async write(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, data: Buffer, writeFlags: number): Promise<number> {
    const slot = this.borrow(fh, nodeid);
    try {
      if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
      this.counters.served++;
      const { fd, flags, dev } = this.table.fileAt(slot, this.f);
      const n = await this.io.write(fd, data, flags & O_APPEND ? -1 : offset, dev);
      if (this.killPrivV2 && writeFlags & WRITE_KILL_SUIDGID) killSuidgid(fd);
      return n;
    } finally {
      this.table.release(slot);
    }
  }

  async flush(_ctx: Context, nodeid: bigint, fh: bigint): Promise<void> {
    const slot = this.borrow(fh, nodeid);
    const { marks } = this.table.fileAt(slot, this.f);
    this.table.release(slot);
    // the owner drops the locks a closing lock owner took (Files.flush)
    if (marks & SHARED_LOCK_OWNERS) this.decline();
    this.counters.served++;
  }

  async fsync(_ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void> {
    const slot = this.borrow(fh, nodeid);
    try {
      this.counters.served++;
      await sys.fsyncAsync(this.table.fileAt(slot, this.f).fd, datasync);
    } finally {
      this.table.release(slot);
    }
  }

  private borrow(fh: bigint, nodeid: bigint): number {
    const slot = this.table.borrow(fh, nodeid);
    if (slot < 0) this.decline();
    return slot;
  }

  decline(): never {
    this.counters.declined++;
    throw DECLINE;
  }
}

/**
 * A FileSystem for a serving thread: the methods above; every other one declines (ProtocolServer
 * turns DECLINE into its DECLINED reply, which the thread forwards to the owner).
 */
export function threadFs(
  tables: SharedFds, fsCounters: FsCounters, settings: ThreadFsSettings, moves: MoveWatch | null = null, known: SharedInodes | null = null,
): { fs: FileSystem; counters: ThreadFsCounters } {
  const files = new ThreadFiles(tables, fsCounters, settings, moves, known);
  const own: Record<string | symbol, unknown> = {};
  for (const k of ['init', 'destroy', 'lookup', 'getattr', 'setattr', 'statx', 'readlink', 'getxattr', 'unlink', 'rmdir', 'read', 'write', 'flush', 'fsync'] as const) own[k] = files[k].bind(files);
  const declined = (): never => files.decline();
  // a Proxy so that every FileSystem method exists; the ProtocolServer's localOps keep the others from being called at all
  const fs = new Proxy(own, { get: (t, k) => (k in t ? t[k] : declined) }) as unknown as FileSystem;
  return { fs, counters: files.counters };
}
