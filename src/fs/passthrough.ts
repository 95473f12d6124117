/**
 * The passthrough filesystem: every operation is a *at() syscall relative to an fd the server
 * holds on the shared tree, with a single-component name. Identity is the sealed file handle; fds
 * are a cache (FdCache) reopened on demand (InodeFds).
 *
 * This class is the facade that implements the FileSystem contract: each operation goes to the
 * module of its concern, and all of them share one services record (src/fs/services.ts) that
 * set-up (src/fs/setup.ts) builds:
 *   entries.ts  names: lookup, forget, mknod, mkdir, symlink, link, unlink, rmdir, rename
 *   attrs.ts    getattr, setattr, readlink, access, statfs
 *   files.ts    open, create, tmpfile, read, write, flush, fsync, fallocate, lseek, copy, release
 *   dirs.ts     opendir, readdir, readdirplus, releasedir
 *   xattrs.ts   extended attributes;  locks.ts  record locks and flock
 *   state.ts    node ids that outlive memory: sealed records, a successor's state
 *   confinement.ts, open-files.ts, data-io.ts  what several of them use
 */
import type { FsError } from '../errors.js';
import { Attrs } from './attrs.js';
import { Confinement } from './confinement.js';
import { Dirs } from './dirs.js';
import { Entries } from './entries.js';
import { Files } from './files.js';
import { noHostChanges, type HostChangeCounters } from './host-changes.js';
import { DefaultFileSystem, type FileSystem } from './filesystem.js';
import { Locks } from './locks.js';
import { OpenFiles } from './open-files.js';
import type { PassthroughOptions } from './options.js';
import type { Services } from './services.js';
import { closeServices, openServices } from './setup.js';
import { exportState, importState } from './state.js';
import type {
  AttrReply, Context, CreateOut, DeviceNumber, DirEntry, FileOffset, Entry, FileLock, InitOptions, OpenOut, SetattrIn, StatfsOut, XattrReply,
} from './types.js';
import { Xattrs } from './xattrs.js';
import { chrooted, type MappedSeg } from '../sys/syscalls.js';

const NO_HOST_CHANGES: Readonly<HostChangeCounters> = Object.freeze(noHostChanges());

interface CoreCounters {
  inodes: number;
  openHandles: number;
  fds: number;
  fdBudget: number;
  hits: number;
  misses: number;
  evictions: number;
  emfile: number;
  reopenByPath: number;
  reopenByHandle: number;
  estale: number;
  sealFailures: number;
  /** MACs made (handles sealed as their records leave memory, sealed states): verifies not counted */
  seals: number;
  resurrected: number;
  /** rename events seen by the MoveWatch (each voids the kept confinement proofs) */
  renamesSeen: number;
  /** confinement proofs made with a readlink of /proc/self/fd/N (those not kept or inherited) */
  placeChecks: number;
  /** RWF_NOWAIT attempts a filesystem refused as unsupported (once per device and direction) */
  nowaitRefusals: number;
  /** --state-file: records loaded at start, appended since, compactions */
  stateLoaded: number;
  stateAppended: number;
  stateCompactions: number;
}

/** With PassthroughOptions.onHostChange: host events read and invalidations told (src/fs/host-changes.ts). */
export type PassthroughCounters = CoreCounters & HostChangeCounters;

export class PassthroughFs extends DefaultFileSystem implements FileSystem {
  private readonly s: Services;
  private readonly entries: Entries;
  private readonly attrs: Attrs;
  private readonly files: Files;
  private readonly dirs: Dirs;
  private readonly xattrs: Xattrs;
  private readonly locks: Locks;
  private destroyed = false;

  constructor(opts: PassthroughOptions) {
    super();
    // the client applies its umask (DONT_MASK off) or sends it; ours must not mask again
    process.umask(0);
    const s = openServices(opts);
    this.s = s;
    const conf = new Confinement(s);
    const open = new OpenFiles(s);
    this.entries = new Entries(s, conf);
    this.attrs = new Attrs(s, conf, open);
    this.files = new Files(s, conf, this.entries, open);
    this.dirs = new Dirs(s, conf, this.entries, open);
    this.xattrs = new Xattrs(s, conf);
    this.locks = new Locks(s, open);
  }

  /** How evicted fds are reopened ('handle' or 'path'). */
  /**
   * The shared root's real path, which an fd's /proc/self/fd path is compared with to prove its
   * place; null once chrooted, where that path is not the kernel's (Confinement.insideChroot).
   */
  get procRootPath(): Buffer | null {
    return chrooted() ? null : this.s.rootPath;
  }

  /** What another serving thread needs to make the handles the inode table is keyed by: the root's mount id and name_to_handle_at's flags. */
  get handleKeying(): { rootMount: bigint; handleFlags: number } {
    return { rootMount: this.s.root.mountId!, handleFlags: this.s.handleFlags };
  }

  get reopenStrategy(): 'handle' | 'path' {
    return this.s.fds.strategy;
  }

  counters(): PassthroughCounters {
    const s = this.s;
    return {
      inodes: s.store.size,
      openHandles: s.handles.size,
      fds: s.cache.size,
      fdBudget: s.cache.budget,
      ...s.cache.counters,
      ...s.counters,
      seals: s.sealer.sealed,
      renamesSeen: s.moves.events,
      stateLoaded: s.stateFile?.counters.loadedRecords ?? 0,
      stateAppended: s.stateFile?.counters.appended ?? 0,
      stateCompactions: s.stateFile?.counters.compactions ?? 0,
      ...(s.changes?.counters ?? NO_HOST_CHANGES),
    };
  }

  /** Sealed state for a successor: every inode the client may still name, with its lookup count. */
  exportState(): Buffer {
    return exportState(this.s);
  }

  /**
   * Take over a predecessor's sealed state (refused whole unless its seal verifies); `fresh`: from
   * a server of another mount (the state file), whose lookups and open files the client no longer holds.
   */
  importState(blob: Buffer, fresh = false, approximate = false): { ok: true; records: number } | { ok: false; reason: string } {
    return importState(this.s, blob, fresh, approximate);
  }

  override async init(o: InitOptions): Promise<void> {
    const n = this.s.negotiated;
    n.writeback = o.writeback;
    n.killPrivV2 = o.killPrivV2;
    n.passthrough = o.passthrough && this.s.backing !== null;
    n.submounts = (o.submounts ?? false) && (this.s.opts.announceSubmounts ?? false);
  }

  override async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    closeServices(this.s);
  }

  // names
  override lookup(ctx: Context, parent: bigint, name: Buffer): Promise<Entry | FsError> {
    return this.entries.lookup(ctx, parent, name);
  }
  override forget(_ctx: Context, nodeid: bigint, nlookup: bigint): void {
    this.entries.forget(nodeid, nlookup);
  }
  override mknod(ctx: Context, parent: bigint, name: Buffer, mode: number, rdev: DeviceNumber, umask: number): Promise<Entry> {
    return this.entries.mknod(ctx, parent, name, mode, rdev, umask);
  }
  override mkdir(ctx: Context, parent: bigint, name: Buffer, mode: number, umask: number): Promise<Entry> {
    return this.entries.mkdir(ctx, parent, name, mode, umask);
  }
  override symlink(ctx: Context, target: Buffer, parent: bigint, name: Buffer): Promise<Entry> {
    return this.entries.symlink(ctx, target, parent, name);
  }
  override link(_ctx: Context, nodeid: bigint, newparent: bigint, newname: Buffer): Promise<Entry> {
    return this.entries.link(nodeid, newparent, newname);
  }
  override unlink(_ctx: Context, parent: bigint, name: Buffer): Promise<void> {
    return this.entries.unlink(parent, name);
  }
  override rmdir(_ctx: Context, parent: bigint, name: Buffer): Promise<void> {
    return this.entries.rmdir(parent, name);
  }
  override rename(_ctx: Context, olddir: bigint, oldname: Buffer, newdir: bigint, newname: Buffer, flags: number): Promise<void> {
    return this.entries.rename(olddir, oldname, newdir, newname, flags);
  }

  // attributes
  override getattr(_ctx: Context, nodeid: bigint, fh?: bigint): Promise<AttrReply> {
    return this.attrs.getattr(nodeid, fh);
  }
  override statx(_ctx: Context, nodeid: bigint, fh: bigint | undefined, _flags: number, _mask: number): Promise<AttrReply> {
    return this.attrs.getattr(nodeid, fh);
  }
  override setattr(_ctx: Context, nodeid: bigint, s: SetattrIn): Promise<AttrReply> {
    return this.attrs.setattr(nodeid, s);
  }
  override readlink(_ctx: Context, nodeid: bigint): Promise<Buffer> {
    return this.attrs.readlink(nodeid);
  }
  override access(ctx: Context, nodeid: bigint, mask: number): Promise<void> {
    return this.attrs.access(ctx, nodeid, mask);
  }
  override statfs(_ctx: Context, nodeid: bigint): Promise<StatfsOut> {
    return this.attrs.statfs(nodeid);
  }
  override syncfs(_ctx: Context, _nodeid: bigint): Promise<void> {
    return this.attrs.syncfs();
  }

  // open files and data
  override open(_ctx: Context, nodeid: bigint, flags: number, killSuidgid = false): Promise<OpenOut> {
    return this.files.openFile(nodeid, flags, killSuidgid);
  }
  override create(ctx: Context, parent: bigint, name: Buffer, mode: number, flags: number, umask: number): Promise<CreateOut> {
    return this.files.create(ctx, parent, name, mode, flags, umask);
  }
  override tmpfile(ctx: Context, parent: bigint, mode: number, flags: number, umask: number): Promise<CreateOut> {
    return this.files.tmpfile(ctx, parent, mode, flags, umask);
  }
  override read(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, size: number, into?: Buffer): Promise<Buffer> {
    return this.files.read(nodeid, fh, offset, size, into);
  }
  override readMapped(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, size: number, into: MappedSeg[]): Promise<number> {
    return this.files.readMapped(nodeid, fh, offset, size, into);
  }
  override writeMapped(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, from: MappedSeg[], writeFlags: number): Promise<number> {
    return this.files.writeMapped(nodeid, fh, offset, from, writeFlags);
  }
  override write(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, data: Buffer, writeFlags: number): Promise<number> {
    return this.files.write(nodeid, fh, offset, data, writeFlags);
  }
  override flush(_ctx: Context, nodeid: bigint, fh: bigint, lockOwner: bigint): Promise<void> {
    return this.files.flush(nodeid, fh, lockOwner);
  }
  override fsync(_ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void> {
    return this.files.fsync(nodeid, fh, datasync);
  }
  override fallocate(_ctx: Context, nodeid: bigint, fh: bigint, mode: number, offset: FileOffset, length: FileOffset): Promise<void> {
    return this.files.fallocate(nodeid, fh, mode, offset, length);
  }
  override release(_ctx: Context, nodeid: bigint, fh: bigint, _flags: number, _lockOwner: bigint, _flockRelease: boolean): Promise<void> {
    return this.files.release(nodeid, fh);
  }
  override lseek(_ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, whence: number): Promise<bigint> {
    return this.files.lseek(nodeid, fh, offset, whence);
  }
  override copyFileRange(
    _ctx: Context, nodeIn: bigint, fhIn: bigint, offIn: FileOffset, nodeOut: bigint, fhOut: bigint, offOut: FileOffset, len: number, flags: number,
  ): Promise<number> {
    return this.files.copyFileRange(nodeIn, fhIn, offIn, nodeOut, fhOut, offOut, len, flags);
  }

  // directories
  override opendir(_ctx: Context, nodeid: bigint, _flags: number): Promise<OpenOut> {
    return this.dirs.opendir(nodeid);
  }
  override readdir(_ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, _size: number, add: (e: DirEntry) => boolean): Promise<void> {
    return this.dirs.readdir(nodeid, fh, offset, add);
  }
  override readdirplus(
    _ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, _size: number, add: (e: DirEntry, entry: Entry | null) => boolean,
  ): Promise<void> {
    return this.dirs.readdirplus(nodeid, fh, offset, add);
  }
  override releasedir(_ctx: Context, nodeid: bigint, fh: bigint): Promise<void> {
    return this.files.release(nodeid, fh, 'dir');
  }
  override fsyncdir(_ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void> {
    return this.files.fsync(nodeid, fh, datasync, 'dir');
  }

  // extended attributes
  override setxattr(_ctx: Context, nodeid: bigint, name: Buffer, value: Buffer, flags: number): Promise<void> {
    return this.xattrs.setxattr(nodeid, name, value, flags);
  }
  override getxattr(_ctx: Context, nodeid: bigint, name: Buffer, size: number): Promise<XattrReply | FsError> {
    return this.xattrs.getxattr(nodeid, name, size);
  }
  override listxattr(_ctx: Context, nodeid: bigint, size: number): Promise<XattrReply> {
    return this.xattrs.listxattr(nodeid, size);
  }
  override removexattr(_ctx: Context, nodeid: bigint, name: Buffer): Promise<void> {
    return this.xattrs.removexattr(nodeid, name);
  }

  // locks
  override getlk(_ctx: Context, nodeid: bigint, fh: bigint, _owner: bigint, lock: FileLock): Promise<FileLock> {
    return this.locks.getlk(nodeid, fh, lock);
  }
  override setlk(_ctx: Context, nodeid: bigint, fh: bigint, owner: bigint, lock: FileLock, sleep: boolean, isFlock: boolean): Promise<void> {
    return this.locks.setlk(nodeid, fh, owner, lock, sleep, isFlock);
  }
}
