import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import type { Logger } from 'pino';
import { E, FsError, errnoName, toErrno } from '../errors.js';
import { LogOnce } from '../log.js';
import { handleKey, type FileHandle } from '../handle/file-handle.js';
import { Sealer } from '../handle/seal.js';
import {
  sys, statAt, statfsFd, procFdPath, parseDirents,
  AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_HANDLE_MNT_ID_UNIQUE, AT_NO_AUTOMOUNT, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW,
  F_RDLCK, F_UNLCK, F_WRLCK, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN,
  O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECT, O_DIRECTORY, O_EXCL, O_NOCTTY, O_NOFOLLOW, O_PATH, O_RDONLY,
  O_RDWR, O_TMPFILE, O_TRUNC, O_WRONLY, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT,
  SEEK_DATA, SEEK_HOLE, SEEK_SET, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, S_ISUID,
  UTIME_NOW, UTIME_OMIT,
  X_OK, W_OK, R_OK, XATTR_CREATE, XATTR_REPLACE,
  type Stat,
} from '../sys/syscalls.js';
import { probeCaps, nofileLimit } from '../sys/caps.js';
import { statToAttr, timeoutMs, fileOpenFlags, dirOpenFlags } from './attr.js';
import { checkName, isDotName } from './confine.js';
import { FdCache } from './fd-cache.js';
import { DefaultFileSystem, ROOT_ID, type FileSystem } from './filesystem.js';
import { HandleTable, type OpenHandle } from './handle-table.js';
import { Inode, InodeStore } from './inode-store.js';
import type { BackingFiles, PassthroughOptions } from './options.js';
import { InodeFds, type ReopenCounters } from './reopen.js';
import { MoveWatch } from './move-watch.js';
import { ExportTable, encodeState, decodeState, type HandleRecord, type InodeRecord } from './export-table.js';
import {
  FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW,
  FATTR_SIZE, FATTR_UID, FOPEN_PASSTHROUGH, WRITE_KILL_SUIDGID,
  type AttrReply, type Context, type CreateOut, type DirEntry, type Entry, type FileLock, type InitOptions, type OpenOut,
  type SetattrIn, type StatfsOut, type XattrReply,
} from './types.js';

const EMPTY = Buffer.alloc(0);
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
/** fds outside the budget: root O_PATH + root dir fd + transient fds (truncate, xattr, '..' walks) */
export const FD_RESERVE = 8;
const XATTR_SIZE_MAX = 65536;
const OFFSET_MAX = 0x7fffffffffffffffn;
const DIRENT_BUF = 32 * 1024;
/** Reads and writes up to this size are done inline when RWF_NOWAIT cannot be used (see readAt). */
const INLINE_IO_MAX = 128 * 1024;
const CLOSE = (fd: number): void => {
  try {
    sys.close(fd);
  } catch {
    /* EBADF/EINTR on close: nothing to recover */
  }
};

export interface PassthroughCounters {
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
  resurrected: number;
  /** rename events seen by the MoveWatch (each voids the kept confinement proofs) */
  renamesSeen: number;
  /** confinement proofs made with a readlink of /proc/self/fd/N (those not kept or inherited) */
  placeChecks: number;
  /** RWF_NOWAIT attempts a filesystem refused as unsupported (once per device and direction) */
  nowaitRefusals: number;
}

/**
 * The passthrough filesystem: every operation is a *at() syscall relative to an fd the server
 * holds on the shared tree, with a single-component name. Identity is the sealed file handle; fds
 * are a cache (FdCache) reopened on demand (InodeFds).
 */
export class PassthroughFs extends DefaultFileSystem implements FileSystem {
  private readonly log: Logger;
  private readonly once: LogOnce;
  private readonly cache: FdCache;
  private readonly store: InodeStore;
  private readonly exports: ExportTable;
  private readonly handles = new HandleTable();
  private readonly fds: InodeFds;
  private readonly sealer: Sealer;
  private readonly root: Inode;
  private readonly rootPathFd: number;
  /** realpath of the shared directory, as the kernel prints paths in /proc/self/fd */
  private readonly rootPath: Buffer;
  /** renames on the root's filesystem: keeps confinement proofs until something moves */
  private readonly moves: MoveWatch;
  private placeChecks = 0;
  /** devices whose filesystem refused RWF_NOWAIT reads / writes (EOPNOTSUPP): not asked again */
  private readonly noNowait = { read: new Set<number>(), write: new Set<number>() };
  private nowaitRefusals = 0;
  private readonly rootDirFd: number;
  private readonly handleFlags: number;
  private readonly generation: bigint;
  private readonly timeout: number;
  private readonly isRoot: boolean;
  private readonly canLinkEmptyPath: boolean;
  private writeback = false;
  private killPrivV2 = false;
  private readonly direntBuf = Buffer.allocUnsafe(DIRENT_BUF);
  private destroyed = false;
  /**
   * Called with a sealed one-record state whenever an inode a client may name appears or moves
   * (a supervisor keeps them so that a crashed worker's successor can resolve the same node ids).
   */
  onRecord: ((sealed: Buffer) => void) | null;
  /**
   * FUSE passthrough: registers an open file's fd with the kernel as a backing file (the /dev/fuse
   * transport sets it; FUSE_DEV_IOC_BACKING_OPEN/CLOSE). With it, reads and writes of that file
   * never reach the server.
   */
  backing: BackingFiles | null;
  private passthroughOn = false;

  constructor(private readonly opts: PassthroughOptions) {
    super();
    this.backing = opts.backing ?? null;
    this.onRecord = opts.onRecord ?? null;
    this.log = opts.log.child({ component: 'fs' });
    this.once = new LogOnce(this.log);
    this.timeout = timeoutMs(opts.cache);
    this.isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    // the client applies its umask (DONT_MASK off) or sends it; ours must not mask again
    process.umask(0);

    const rootPath = Buffer.from(realpathSync(opts.root));
    this.rootPath = rootPath;
    this.rootPathFd = sys.openat(AT_FDCWD, rootPath, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    try {
      // a real directory fd: open_by_handle_at rejects an O_PATH mount fd with EBADF
      this.rootDirFd = sys.openat(this.rootPathFd, DOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    } catch (e) {
      CLOSE(this.rootPathFd);
      throw e;
    }
    this.handleFlags = probeHandleFlags(this.rootPathFd);
    let rootHandle: FileHandle;
    try {
      rootHandle = sys.nameToHandleAt(this.rootPathFd, EMPTY, AT_EMPTY_PATH | this.handleFlags);
    } catch (e) {
      CLOSE(this.rootPathFd);
      CLOSE(this.rootDirFd);
      throw new Error(`the shared directory's filesystem does not support file handles (${(e as Error).message}); handlefs needs them`);
    }
    this.sealer = new Sealer(opts.key, Buffer.concat([Buffer.from(String(rootHandle.type)), rootHandle.bytes]), opts.previousKeys ?? []);
    // a per-process generation: node ids are never reused within a process; across processes the
    // generation tells an old client handle apart
    this.generation = BigInt((randomBytes(4).readUInt32LE(0) | 1) >>> 0);

    const caps = probeCaps();
    this.canLinkEmptyPath = caps.dacReadSearch;
    let strategy: 'handle' | 'path';
    if (opts.reopen === 'path') strategy = 'path';
    else if (opts.reopen === 'handle' || caps.dacReadSearch) {
      strategy = probeOpenByHandle(this.rootDirFd, rootHandle) ? 'handle' : 'path';
      if (opts.reopen === 'handle' && strategy !== 'handle') {
        CLOSE(this.rootPathFd);
        CLOSE(this.rootDirFd);
        throw new Error('--reopen handle needs CAP_DAC_READ_SEARCH (open_by_handle_at is refused); use --reopen path or auto');
      }
    } else strategy = 'path';

    const budget = opts.fdBudget === 'auto' ? autoBudget() : opts.fdBudget;
    this.cache = new FdCache(budget, CLOSE, this.log);
    this.cache.onEvict = (key) => {
      const h = this.handles.byKey(key);
      if (h) h.cursorValid = false;
    };
    this.store = new InodeStore(ROOT_ID, this.log);
    this.handles.resolveInode = (nodeid) => this.inode(nodeid);
    this.exports = new ExportTable(opts.exportTableSize ?? 100_000);
    this.store.onDrop = (inode) => {
      this.cache.remove(inode.fdKey);
      const r = this.recordOf(inode, 0);
      if (r) this.exports.put(r);
    };
    const rootStat = statAt(this.rootPathFd, EMPTY, AT_EMPTY_PATH);
    this.root = new Inode(ROOT_ID, this.generation, rootStat.mode & S_IFMT, rootHandle,
      this.sealer.seal(rootHandle.type, rootHandle.bytes), handleKey(rootHandle), false);
    this.root.nlookup = 1;
    this.store.add(this.root);
    // the root's O_PATH fd and dir fd are the reserve, outside the budget: never evicted
    this.fds = new InodeFds(this.cache, this.sealer, strategy, this.rootDirFd, rootHandle, this.handleFlags, this.log, this.root, this.rootPathFd);
    this.moves = new MoveWatch(rootPath, this.log);
    this.log.info({ root: opts.root, budget, reopen: strategy, handleFlags: this.handleFlags, renameWatch: this.moves.enabled }, 'filesystem ready');
  }

  /** How evicted fds are reopened ('handle' or 'path'). */
  get reopenStrategy(): 'handle' | 'path' {
    return this.fds.strategy;
  }

  counters(): PassthroughCounters {
    return {
      inodes: this.store.size,
      openHandles: this.handles.size,
      fds: this.cache.size,
      fdBudget: this.cache.budget,
      ...this.cache.counters,
      ...this.fds.counters,
      renamesSeen: this.moves.events,
      placeChecks: this.placeChecks,
      nowaitRefusals: this.nowaitRefusals,
    };
  }

  // ------------------------------------------------------------------ helpers

  private inode(nodeid: bigint): Inode {
    if (nodeid === ROOT_ID) return this.root;
    const i = this.store.get(nodeid);
    if (i) return i;
    // not in memory: a client's persistent handle, or a request to a successor after a restart
    return this.resurrect(nodeid, 0);
  }

  /** The record a successor (or a later LOOKUP of ".") needs to find this inode again. */
  private recordOf(inode: Inode, nlookup: number): InodeRecord | null {
    if (!inode.reopenable || !inode.handle || !inode.seal || !inode.parent || !inode.name) return null;
    return {
      nodeid: inode.nodeid, generation: inode.generation, parent: inode.parent.nodeid, name: Buffer.from(inode.name),
      type: inode.type, handleType: inode.handle.type, handle: inode.handle.bytes, seal: inode.seal, nlookup,
    };
  }

  /**
   * Bring back an inode that left memory, under its old node id, from its sealed record: the seal
   * is verified first; the parent is brought back the same way (bounded depth); the inode is then
   * reopened beneath its parent by name (or, for a directory with CAP_DAC_READ_SEARCH, by handle
   * and proven beneath the root) and its handle compared byte for byte. Anything else is ESTALE.
   */
  private resurrect(nodeid: bigint, depth: number): Inode {
    const rec = this.exports.get(nodeid);
    if (!rec) throw new FsError(E.ESTALE, 'unknown node id');
    if (depth > 4096) throw new FsError(E.ESTALE, 'parent chain too deep');
    if (!this.sealer.verify(rec.handleType, rec.handle, rec.seal)) {
      this.fdsCounters().sealFailures++;
      this.log.error({ nodeid: String(nodeid) }, 'inode record seal does not verify; refusing it (tampering or a bug)');
      throw new FsError(E.ESTALE, 'record seal');
    }
    const parent = rec.parent === ROOT_ID ? this.root : this.store.get(rec.parent) ?? this.resurrect(rec.parent, depth + 1);
    const handle: FileHandle = { type: rec.handleType, bytes: rec.handle, mountId: this.root.handle!.mountId };
    const fd = this.fds.openRecord(parent, rec.name, handle, rec.type);
    const key = handleKey(handle);
    const inode = new Inode(rec.nodeid, rec.generation, rec.type, handle, rec.seal, key, true);
    if (this.store.byKey(key)) this.store.addUnindexed(inode);
    else this.store.add(inode);
    this.store.setParent(inode, parent, rec.name);
    inode.nlookup = rec.nlookup;
    this.exports.delete(nodeid);
    this.cache.insertPinned(inode.fdKey, fd, 'path');
    this.cache.unpin(inode.fdKey, fd);
    this.fdsCounters().resurrected++;
    return inode;
  }

  private fdsCounters(): ReopenCounters {
    return this.fds.counters;
  }

  private emitRecord(inode: Inode): void {
    if (!this.onRecord) return;
    const r = this.recordOf(inode, inode.nlookup);
    if (r) this.onRecord(encodeState(this.sealer, { nextNodeid: this.store.next, generation: this.generation, records: [r] }));
  }

  /** Sealed state for a successor: every inode the client may still name, with its lookup count. */
  exportState(): Buffer {
    const records: InodeRecord[] = [];
    for (const inode of this.store.all()) {
      if (inode === this.root) continue;
      const r = this.recordOf(inode, inode.nlookup);
      if (r) records.push(r);
    }
    for (const r of this.exports.values()) records.push(r);
    // open files and directories: a successor reopens them on first use (their locks do not move)
    const handles: HandleRecord[] = [];
    for (const h of this.handles.all()) {
      if (h.inode.reopenable && !h.inode.unlinked) handles.push({ fh: h.fh, nodeid: h.inode.nodeid, flags: h.flags, kind: h.kind });
    }
    for (const p of this.handles.pendingRecords()) handles.push(p);
    return encodeState(this.sealer, { nextNodeid: this.store.next, generation: this.generation, records, handles });
  }

  /**
   * Take over a predecessor's sealed state: refused whole when its seal does not verify (another
   * key, truncated, reordered, flipped). Records are brought back lazily, on first use.
   */
  importState(blob: Buffer): { ok: true; records: number } | { ok: false; reason: string } {
    const r = decodeState(this.sealer, blob);
    if (!r.ok) {
      this.fdsCounters().sealFailures++;
      this.log.error({ reason: r.reason }, 'refusing the predecessor state');
      return { ok: false, reason: r.reason };
    }
    this.store.next = r.state.nextNodeid;
    for (const rec of r.state.records) if (rec.nodeid !== ROOT_ID && !this.store.get(rec.nodeid)) this.exports.put(rec);
    for (const h of r.state.handles ?? []) this.handles.restore(h.fh, h.nodeid, h.flags, h.kind);
    this.log.info({ records: r.state.records.length }, 'predecessor state accepted');
    return { ok: true, records: r.state.records.length };
  }

  private withFd<T>(inode: Inode, fn: (fd: number) => T): T {
    if (inode === this.root) return fn(this.rootPathFd);
    return this.fds.with(inode, fn);
  }

  private acquire(inode: Inode): number {
    return inode === this.root ? this.rootPathFd : this.fds.acquire(inode);
  }

  private releaseInode(inode: Inode, fd: number): void {
    if (inode !== this.root) this.fds.release(inode, fd);
  }

  /**
   * A directory (or a file about to be opened) must still be beneath the shared root: the host may
   * have moved it out while we held its fd, and an fd follows its file. The kernel's path of the
   * fd (/proc/self/fd/N) must be the root or below it; otherwise ESTALE, and one warning.
   */
  private confirmInside(inode: Inode, fd: number): void {
    if (inode === this.root) return;
    // the proof holds until something is renamed on the root's filesystem (MoveWatch); taken
    // before the readlink, so that a rename during it voids the new proof
    const epoch = this.moves.epoch();
    if (epoch >= 0 && inode.proven === epoch) return;
    this.placeChecks++;
    let p: Buffer;
    try {
      p = sys.readlinkat(AT_FDCWD, procFdPath(fd));
    } catch {
      throw new FsError(E.ESTALE, 'cannot place the inode');
    }
    const r = this.rootPath;
    if (p.length > r.length && p[r.length] === 0x2f && p.subarray(0, r.length).equals(r)) {
      // renames are only watched on the root's filesystem: a submount's inodes are proven each time
      if (inode.handle && inode.handle.mountId === this.root.handle!.mountId) inode.proven = epoch;
      return;
    }
    this.fdsCounters().estale++;
    this.once.warn(`outside-${inode.nodeid}`, { nodeid: String(inode.nodeid) },
      'an inode was moved outside the shared directory behind the server\'s back; refusing it (ESTALE)');
    throw new FsError(E.ESTALE, 'moved outside the shared directory');
  }

  /**
   * A child just reached by one name in `parent` is beneath the root when the parent is (the root
   * itself, or proven at the latest epoch read): it takes the parent's proof, so its first check
   * needs no readlink. Same mount only, as for any kept proof.
   */
  private inheritProof(child: Inode, parent: Inode): void {
    const e = this.moves.last;
    if (e < 0 || child === this.root) return;
    if (parent !== this.root && parent.proven !== e) return;
    if (child.handle && child.handle.mountId === this.root.handle!.mountId) child.proven = e;
  }

  /** Borrow a directory's fd to reach names in it, proving it is still inside. */
  private acquireDir(inode: Inode): number {
    const fd = this.acquire(inode);
    try {
      this.confirmInside(inode, fd);
    } catch (e) {
      this.releaseInode(inode, fd);
      throw e;
    }
    return fd;
  }

  private entry(inode: Inode, st: Stat): Entry {
    return { nodeid: inode.nodeid, generation: inode.generation, attr: statToAttr(st), entryTimeoutMs: this.timeout, attrTimeoutMs: this.timeout };
  }

  private handleOf(fd: number): FileHandle | null {
    try {
      return sys.nameToHandleAt(fd, EMPTY, AT_EMPTY_PATH | this.handleFlags);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'EOVERFLOW') return null;
      throw e;
    }
  }

  /** Open a kernel fd, evicting one idle cached fd and retrying once if the process hit its limit. */
  private openRetry<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if ((code === 'EMFILE' || code === 'ENFILE') && this.cache.evictOne()) {
        this.once.warn('kernel-emfile', { code }, 'process fd limit reached below the fd budget; evicting (lower --fd-budget or raise RLIMIT_NOFILE)');
        return fn();
      }
      throw e;
    }
  }

  /**
   * Take an O_PATH fd of a just-reached child (ownership passes here) and return its entry: the
   * existing inode when the handle is known (hard link, re-lookup), a new one otherwise.
   * Counts one lookup.
   */
  private adopt(parent: Inode | null, name: Buffer | null, fd: number, reopenable = true): Entry {
    let st: Stat;
    let h: FileHandle | null;
    try {
      st = statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      h = this.handleOf(fd);
    } catch (e) {
      CLOSE(fd);
      throw e;
    }
    const key = h ? handleKey(h) : `d${st.devMajor}:${st.devMinor}:${st.ino}`;
    let inode = this.store.byKey(key);
    if (inode && inode.type !== (st.mode & S_IFMT)) {
      // the same identity with another type: an old (dev, ino) reused by the host
      this.store.unindex(inode);
      inode = undefined;
    }
    if (inode) {
      if (inode === this.root || this.cache.has(inode.fdKey)) CLOSE(fd);
      else {
        this.cache.insertPinned(inode.fdKey, fd, 'path', !inode.reopenable);
        this.cache.unpin(inode.fdKey, fd);
      }
      // names are views into the request buffer (filesystem.ts): keep a copy
      if (parent && name && inode !== this.root && inode !== parent && inode.reopenable) this.store.setParent(inode, parent, Buffer.from(name));
    } else {
      // another mount below the share, or no handle support: the fd cannot be reopened, pin it
      const canReopen = reopenable && h !== null && h.mountId === this.root.handle!.mountId;
      inode = new Inode(this.store.allocId(), this.generation, st.mode & S_IFMT, h,
        h ? this.sealer.seal(h.type, h.bytes) : null, key, canReopen);
      this.store.add(inode);
      if (parent && name) this.store.setParent(inode, parent, Buffer.from(name));
      this.emitRecord(inode);
      this.cache.insertPinned(inode.fdKey, fd, 'path', !canReopen);
      this.cache.unpin(inode.fdKey, fd);
      if (!canReopen) this.once.warn(`pin-${h ? 'mnt' : 'nohandle'}`, { name: name?.toString() },
        h ? 'a submount below the shared directory: its inodes keep their fds open (cannot be reopened)'
          : 'filesystem without file handles below the shared directory: its inodes keep their fds open');
    }
    inode.ino = st.ino;
    inode.dev = devOf(st);
    inode.nlookup++;
    if (parent && name) this.inheritProof(inode, parent);
    return this.entry(inode, st);
  }

  /**
   * LOOKUP of a name whose inode the server already knows, without opening anything:
   * name_to_handle_at and statx by name in the proven directory. The handle names the inode; the
   * statx must then describe that same inode (the ino and device recorded when it was last reached
   * through an fd), or the name changed between the two calls and the slow path decides. Unknown
   * inodes, submounts and filesystems without handles take the slow path (null); a name that is
   * not there is ENOENT at once.
   */
  private lookupKnown(parent: Inode, dirFd: number, name: Buffer): Entry | null {
    const h = sys.nameToHandleAtTry(dirFd, name, this.handleFlags);
    if (typeof h === 'number') {
      if (h === -E.ENOENT) throw new FsError(E.ENOENT, 'name_to_handle_at');
      return null;
    }
    const inode = this.store.byKey(handleKey(h));
    if (!inode || inode === this.root || inode.ino < 0n) return null;
    let st: Stat;
    try {
      st = statAt(dirFd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT);
    } catch {
      return null;
    }
    if (st.ino !== inode.ino || devOf(st) !== inode.dev || (st.mode & S_IFMT) !== inode.type) return null;
    if (inode !== parent && inode.reopenable && (inode.parent !== parent || !inode.name?.equals(name))) {
      // names are views into the request buffer (filesystem.ts): keep a copy
      this.store.setParent(inode, parent, Buffer.from(name));
    }
    inode.nlookup++;
    this.inheritProof(inode, parent);
    return this.entry(inode, st);
  }

  /** openat that throws an FsError (built cheaply: a negative lookup is common), with openRetry's EMFILE handling. */
  private openAtFs(dirFd: number, name: Buffer, flags: number, mode: number): number {
    let fd = sys.openatTry(dirFd, name, flags | O_CLOEXEC, mode);
    if ((fd === -E.EMFILE || fd === -E.ENFILE) && this.cache.evictOne()) {
      this.once.warn('kernel-emfile', { code: errnoName(-fd) }, 'process fd limit reached below the fd budget; evicting (lower --fd-budget or raise RLIMIT_NOFILE)');
      fd = sys.openatTry(dirFd, name, flags | O_CLOEXEC, mode);
    }
    if (fd < 0) throw new FsError(-fd, 'openat');
    return fd;
  }

  /** Look `name` up in directory `parent` whose fd (O_PATH or real) is `dirFd`. */
  private lookupAt(parent: Inode, dirFd: number, name: Buffer): Entry {
    this.cache.reserve();
    const fd = this.openAtFs(dirFd, name, O_PATH | O_NOFOLLOW, 0);
    return this.adopt(parent, name, fd);
  }

  /** The known inode a name refers to now, if any (no lookup counted). */
  private findChild(dirFd: number, name: Buffer): Inode | undefined {
    let fd: number;
    try {
      fd = sys.openat(dirFd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    } catch {
      return undefined;
    }
    try {
      const h = this.handleOf(fd);
      if (h) return this.store.byKey(handleKey(h));
      const st = statAt(fd, EMPTY, AT_EMPTY_PATH);
      return this.store.byKey(`d${st.devMajor}:${st.devMinor}:${st.ino}`);
    } catch {
      return undefined;
    } finally {
      CLOSE(fd);
    }
  }

  /** After an unlink/rename-over: an inode whose last name went while files are open keeps its fds. */
  private noteMaybeUnlinked(inode: Inode | undefined): void {
    if (!inode || inode === this.root) return;
    const fd = this.cache.pin(inode.fdKey);
    if (fd === undefined) return;
    try {
      const st = statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      if (st.nlink === 0 || (inode.type === S_IFDIR && st.nlink <= 1)) {
        inode.unlinked = true;
        inode.reopenable = false;
        this.store.unindex(inode);
        this.cache.setPermanent(inode.fdKey, true);
        for (const h of this.handles.forInode(inode)) this.cache.setPermanent(h.fdKey, true);
      }
    } catch {
      /* gone already */
    } finally {
      this.cache.unpin(inode.fdKey, fd);
    }
  }

  /** Files the server (root) creates for another user belong to the requester, as virtiofsd does. */
  private chownToRequester(ctx: Context, fd: number, parentFd: number): void {
    if (!this.opts.creds || !this.isRoot || (ctx.uid === 0 && ctx.gid === 0)) return;
    // a setgid parent hands its group down; the kernel already did that
    const pst = statAt(parentFd, EMPTY, AT_EMPTY_PATH);
    const gid = pst.mode & S_ISGID ? -1 : ctx.gid;
    sys.fchownat(fd, EMPTY, ctx.uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  }

  private openProc(inodeFd: number, flags: number): number {
    return this.openRetry(() => sys.openat(AT_FDCWD, procFdPath(inodeFd), flags | O_CLOEXEC, 0));
  }

  /** Borrow the fd of an open file or directory, reopening it if it was evicted. */
  private acquireFile(h: OpenHandle): number {
    const fd = this.cache.pin(h.fdKey);
    if (fd !== undefined) return fd;
    if (h.inode.unlinked) throw new FsError(E.ESTALE, 'unlinked file lost its fd');
    const ifd = this.acquire(h.inode);
    let nfd: number;
    try {
      this.cache.reserve();
      nfd = h.kind === 'dir'
        ? this.openRetry(() => sys.openat(ifd, DOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0))
        : this.openProc(ifd, h.flags);
    } finally {
      this.releaseInode(h.inode, ifd);
    }
    h.cursorValid = false;
    this.cache.insertPinned(h.fdKey, nfd, 'file', h.locked || h.inode.unlinked);
    return nfd;
  }

  private releaseFile(h: OpenHandle, fd: number): void {
    this.cache.unpin(h.fdKey, fd);
  }

  private withFile<T>(h: OpenHandle, fn: (fd: number) => T): T {
    const fd = this.acquireFile(h);
    try {
      return fn(fd);
    } finally {
      this.releaseFile(h, fd);
    }
  }

  private async withFileAsync<T>(h: OpenHandle, fn: (fd: number) => T | Promise<T>): Promise<T> {
    const fd = this.acquireFile(h);
    try {
      return await fn(fd);
    } finally {
      this.releaseFile(h, fd);
    }
  }

  // ------------------------------------------------------------------ lifecycle

  override async init(o: InitOptions): Promise<void> {
    this.writeback = o.writeback;
    this.killPrivV2 = o.killPrivV2;
    this.passthroughOn = o.passthrough && this.backing !== null;
  }

  /** The reply flags of an opened file, registering it as a backing file under FUSE passthrough. */
  private openReply(h: OpenHandle, fd: number): OpenOut {
    if (this.passthroughOn && this.backing) {
      try {
        h.backingId = this.backing.open(fd);
        // the kernel holds its own reference to the file: reads and writes go to it directly
        return { fh: h.fh, openFlags: FOPEN_PASSTHROUGH, backingId: h.backingId };
      } catch (e) {
        this.once.warn('backing', { code: (e as { code?: string }).code }, 'cannot register a backing file; serving reads and writes through the server');
      }
    }
    return { fh: h.fh, openFlags: fileOpenFlags(this.opts.cache) };
  }

  override async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.cache.clear();
    this.moves.close();
    CLOSE(this.rootDirFd);
    CLOSE(this.rootPathFd);
  }

  // ------------------------------------------------------------------ names

  override async lookup(_ctx: Context, parentId: bigint, name: Buffer): Promise<Entry> {
    checkName(name, true);
    const parent = this.inode(parentId);
    // LOOKUP of "." names the node itself, of any type: the kernel's export code resolves a client
    // file handle that way (fuse_get_dentry)
    const isSelf = name.length === 1 && name[0] === 0x2e;
    if (!isSelf && parent.type !== S_IFDIR) throw new FsError(E.ENOTDIR);
    if (isDotName(name)) {
      let target = parent;
      if (name.length === 2) {
        // '..' of the root is the root; otherwise the parent link (never a walk above the root)
        target = parent === this.root ? this.root : parent.parent ?? this.root;
        if (parent !== this.root && !parent.parent) {
          // a directory reached without a parent link (tmp/export): prove nothing, refuse
          throw new FsError(E.ESTALE, 'parent unknown');
        }
      }
      const st = this.withFd(target, (fd) => statAt(fd, EMPTY, AT_EMPTY_PATH));
      target.nlookup++;
      return this.entry(target, st);
    }
    const dfd = this.acquireDir(parent);
    try {
      return this.lookupKnown(parent, dfd, name) ?? this.lookupAt(parent, dfd, name);
    } finally {
      this.releaseInode(parent, dfd);
    }
  }

  override forget(_ctx: Context, nodeid: bigint, nlookup: bigint): void {
    const inode = nodeid === ROOT_ID ? this.root : this.store.get(nodeid);
    if (!inode) {
      const rec = this.exports.get(nodeid);
      // keep the record (a persistent client handle may still name it), drop the count
      if (rec) rec.nlookup = Math.max(0, rec.nlookup - Number(nlookup > 0xffffffffn ? 0xffffffffn : nlookup));
      else this.log.debug({ nodeid: String(nodeid) }, 'forget of an unknown node id');
      return;
    }
    const n = nlookup > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(nlookup);
    if (inode === this.root) {
      // the root lives as long as the session; the kernel's count on it is not ours to drop
      return;
    }
    this.store.forget(inode, n);
  }

  override async getattr(_ctx: Context, nodeid: bigint, fh?: bigint): Promise<AttrReply> {
    const inode = this.inode(nodeid);
    if (fh !== undefined && fh !== 0n) {
      const h = this.handles.get(fh, nodeid);
      const st = this.withFile(h, (fd) => statAt(fd, EMPTY, AT_EMPTY_PATH));
      return { attr: statToAttr(st), attrTimeoutMs: this.timeout };
    }
    const st = this.withFd(inode, (fd) => statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
    return { attr: statToAttr(st), attrTimeoutMs: this.timeout };
  }

  override async statx(_ctx: Context, nodeid: bigint, fh: bigint | undefined, _flags: number, _mask: number): Promise<AttrReply> {
    return this.getattr(_ctx, nodeid, fh);
  }

  override async setattr(ctx: Context, nodeid: bigint, s: SetattrIn): Promise<AttrReply> {
    const inode = this.inode(nodeid);
    const h = s.valid & FATTR_FH && s.fh !== 0n ? this.handles.get(s.fh, nodeid, 'file') : null;
    this.withFd(inode, (fd) => {
      // a change of something the host moved out of the share would change the outside
      this.confirmInside(inode, fd);
      if (s.valid & FATTR_MODE) sys.fchmodat2(fd, EMPTY, s.mode & 0o7777, AT_EMPTY_PATH);
      if (s.valid & (FATTR_UID | FATTR_GID)) {
        const uid = s.valid & FATTR_UID ? s.uid : -1;
        const gid = s.valid & FATTR_GID ? s.gid : -1;
        sys.fchownat(fd, EMPTY, uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      }
      if (s.valid & FATTR_SIZE) {
        if (inode.type !== S_IFREG) throw new FsError(inode.type === S_IFDIR ? E.EISDIR : E.EINVAL);
        const size = Number(s.size);
        if (!Number.isSafeInteger(size)) throw new FsError(E.EFBIG);
        if (h) this.withFile(h, (ffd) => sys.ftruncate(ffd, size));
        else {
          const wfd = this.openProc(fd, O_WRONLY);
          try {
            sys.ftruncate(wfd, size);
          } finally {
            CLOSE(wfd);
          }
        }
        if (this.killPrivV2 && s.valid & FATTR_KILL_SUIDGID) this.killSuidgid(fd);
      }
      if (s.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
        const [as, an] = s.valid & FATTR_ATIME_NOW ? [0, UTIME_NOW] : s.valid & FATTR_ATIME ? [Number(s.atime.sec), s.atime.nsec] : [0, UTIME_OMIT];
        const [ms, mn] = s.valid & FATTR_MTIME_NOW ? [0, UTIME_NOW] : s.valid & FATTR_MTIME ? [Number(s.mtime.sec), s.mtime.nsec] : [0, UTIME_OMIT];
        sys.utimensat(fd, EMPTY, as, an, ms, mn, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      }
    });
    void ctx;
    return this.getattr(ctx, nodeid);
  }

  /** HANDLE_KILLPRIV_V2: the server clears suid (and sgid with group-exec) on write/truncate. */
  private killSuidgid(fd: number): void {
    const st = statAt(fd, EMPTY, AT_EMPTY_PATH);
    let mode = st.mode & 0o7777;
    if (mode & S_ISUID) mode &= ~S_ISUID;
    if (mode & S_ISGID && mode & 0o010) mode &= ~S_ISGID;
    if (mode !== (st.mode & 0o7777)) sys.fchmodat2(fd, EMPTY, mode, AT_EMPTY_PATH);
  }

  override async readlink(_ctx: Context, nodeid: bigint): Promise<Buffer> {
    const inode = this.inode(nodeid);
    if (inode.type !== S_IFLNK) throw new FsError(E.EINVAL);
    return this.withFd(inode, (fd) => sys.readlinkat(fd, EMPTY));
  }

  private makeNode(ctx: Context, parentId: bigint, name: Buffer, make: (dfd: number) => void): Entry {
    checkName(name);
    const parent = this.inode(parentId);
    const dfd = this.acquireDir(parent);
    try {
      make(dfd);
      const e = this.lookupAt(parent, dfd, name);
      const inode = this.store.get(e.nodeid)!;
      if (this.opts.creds && this.isRoot && (ctx.uid !== 0 || ctx.gid !== 0)) {
        this.withFd(inode, (fd) => this.chownToRequester(ctx, fd, dfd));
        e.attr = statToAttr(this.withFd(inode, (fd) => statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)));
      }
      return e;
    } finally {
      this.releaseInode(parent, dfd);
    }
  }

  override async mknod(ctx: Context, parentId: bigint, name: Buffer, mode: number, rdev: number, umask: number): Promise<Entry> {
    const major = ((rdev >>> 8) & 0xfff);
    const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
    return this.makeNode(ctx, parentId, name, (dfd) => sys.mknodat(dfd, name, mode & ~umask, sys.makedev(major, minor)));
  }

  override async mkdir(ctx: Context, parentId: bigint, name: Buffer, mode: number, umask: number): Promise<Entry> {
    return this.makeNode(ctx, parentId, name, (dfd) => sys.mkdirat(dfd, name, mode & ~umask & 0o7777));
  }

  override async symlink(ctx: Context, target: Buffer, parentId: bigint, name: Buffer): Promise<Entry> {
    if (target.length === 0 || target.indexOf(0) >= 0) throw new FsError(E.EINVAL);
    if (target.length >= 4096) throw new FsError(E.ENAMETOOLONG);
    // the target is stored, never followed by the server
    return this.makeNode(ctx, parentId, name, (dfd) => sys.symlinkat(target, dfd, name));
  }

  private removeName(parentId: bigint, name: Buffer, flags: number): void {
    checkName(name);
    const parent = this.inode(parentId);
    const dfd = this.acquireDir(parent);
    try {
      const victim = this.handles.size > 0 ? this.findChild(dfd, name) : undefined;
      sys.unlinkat(dfd, name, flags);
      this.noteMaybeUnlinked(victim);
    } finally {
      this.releaseInode(parent, dfd);
    }
  }

  override async unlink(_ctx: Context, parentId: bigint, name: Buffer): Promise<void> {
    this.removeName(parentId, name, 0);
  }

  override async rmdir(_ctx: Context, parentId: bigint, name: Buffer): Promise<void> {
    this.removeName(parentId, name, AT_REMOVEDIR);
  }

  override async rename(_ctx: Context, olddirId: bigint, oldname: Buffer, newdirId: bigint, newname: Buffer, flags: number): Promise<void> {
    checkName(oldname);
    checkName(newname);
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) throw new FsError(E.EINVAL);
    const olddir = this.inode(olddirId);
    const newdir = this.inode(newdirId);
    const ofd = this.acquireDir(olddir);
    try {
      const nfd = this.acquireDir(newdir);
      try {
        const moved = this.findChild(ofd, oldname);
        const other = flags & RENAME_EXCHANGE || this.handles.size > 0 ? this.findChild(nfd, newname) : undefined;
        sys.renameat2(ofd, oldname, nfd, newname, flags);
        if (moved && moved.reopenable) {
          this.store.setParent(moved, newdir, Buffer.from(newname));
          this.emitRecord(moved);
        }
        if (flags & RENAME_EXCHANGE) {
          if (other && other.reopenable) this.store.setParent(other, olddir, Buffer.from(oldname));
        } else this.noteMaybeUnlinked(other);
      } finally {
        this.releaseInode(newdir, nfd);
      }
    } finally {
      this.releaseInode(olddir, ofd);
    }
  }

  override async link(_ctx: Context, nodeid: bigint, newparentId: bigint, newname: Buffer): Promise<Entry> {
    checkName(newname);
    const inode = this.inode(nodeid);
    if (inode.type === S_IFDIR) throw new FsError(E.EPERM);
    const newparent = this.inode(newparentId);
    const dfd = this.acquireDir(newparent);
    try {
      this.withFd(inode, (fd) => {
        if (this.canLinkEmptyPath) sys.linkat(fd, EMPTY, dfd, newname, AT_EMPTY_PATH);
        // without CAP_DAC_READ_SEARCH: through the fd's /proc magic link
        else sys.linkat(AT_FDCWD, procFdPath(fd), dfd, newname, AT_SYMLINK_FOLLOW);
      });
      return this.lookupAt(newparent, dfd, newname);
    } finally {
      this.releaseInode(newparent, dfd);
    }
  }

  // ------------------------------------------------------------------ files

  private sanitizeOpenFlags(flags: number): number {
    let f = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_NOFOLLOW); // O_NOFOLLOW: the kernel resolved the name; on the /proc magic link it would be ELOOP
    if (this.writeback) {
      // the kernel may read to fill pages of a write-only file, and it handles O_APPEND itself
      if ((f & O_ACCMODE) === O_WRONLY) f = (f & ~O_ACCMODE) | O_RDWR;
      f &= ~O_APPEND;
    }
    return f;
  }

  override async open(_ctx: Context, nodeid: bigint, flags: number, killSuidgid = false): Promise<OpenOut> {
    const inode = this.inode(nodeid);
    if (inode.type === S_IFDIR) throw new FsError(E.EISDIR);
    // special files are never opened for I/O by the server
    if (inode.type !== S_IFREG) throw new FsError(E.EACCES);
    const f = this.sanitizeOpenFlags(flags);
    const fd = this.withFd(inode, (ifd) => {
      this.confirmInside(inode, ifd);
      this.cache.reserve();
      const nfd = this.openProc(ifd, f);
      // the server (root) keeps setuid bits on truncation; the client's caller may not
      try {
        if (killSuidgid && this.killPrivV2 && f & O_TRUNC) this.killSuidgid(ifd);
      } catch (e) {
        CLOSE(nfd);
        throw e;
      }
      return nfd;
    });
    const h = this.handles.add(inode, 'file', f & ~O_TRUNC);
    this.cache.insertPinned(h.fdKey, fd, 'file', inode.unlinked);
    const reply = this.openReply(h, fd);
    this.cache.unpin(h.fdKey, fd);
    return reply;
  }

  override async create(ctx: Context, parentId: bigint, name: Buffer, mode: number, flags: number, umask: number): Promise<CreateOut> {
    checkName(name);
    const parent = this.inode(parentId);
    const f = this.sanitizeOpenFlags(flags) | O_CREAT | (flags & O_EXCL) | O_NOFOLLOW;
    const dfd = this.acquireDir(parent);
    try {
      this.cache.reserve();
      // O_NOFOLLOW: a symlink planted at `name` is never followed (ELOOP)
      // O_EXCL first: only a file this call made goes to the requester; an existing one (made on
      // the host since the client's lookup) is opened and keeps its owner
      let created = true;
      let fd: number;
      try {
        fd = this.openAtFs(dfd, name, f | O_EXCL, mode & ~umask & 0o7777);
      } catch (e) {
        if (f & O_EXCL || (e as FsError).errno !== E.EEXIST) throw e;
        created = false;
        fd = this.openAtFs(dfd, name, f & ~O_CREAT, 0);
      }
      let entry: Entry;
      try {
        if (created) this.chownToRequester(ctx, fd, dfd);
        this.cache.reserve();
        const pfd = this.openProc(fd, O_PATH);
        entry = this.adopt(parent, Buffer.from(name), pfd);
      } catch (e) {
        CLOSE(fd);
        throw e;
      }
      const inode = this.store.get(entry.nodeid)!;
      const h = this.handles.add(inode, 'file', f & ~(O_TRUNC | O_CREAT | O_EXCL | O_NOFOLLOW));
      this.cache.insertPinned(h.fdKey, fd, 'file');
      const open = this.openReply(h, fd);
      this.cache.unpin(h.fdKey, fd);
      return { entry, open };
    } finally {
      this.releaseInode(parent, dfd);
    }
  }

  override async tmpfile(ctx: Context, parentId: bigint, mode: number, flags: number, umask: number): Promise<CreateOut> {
    const parent = this.inode(parentId);
    let f = this.sanitizeOpenFlags(flags) & ~O_TRUNC;
    if ((f & O_ACCMODE) === O_RDONLY) f = (f & ~O_ACCMODE) | O_RDWR;
    const dfd = this.acquireDir(parent);
    try {
      this.cache.reserve();
      const fd = this.openRetry(() => sys.openat(dfd, DOT, (f | O_TMPFILE | O_CLOEXEC) & ~O_DIRECTORY | O_TMPFILE, mode & ~umask & 0o7777));
      let entry: Entry;
      try {
        this.chownToRequester(ctx, fd, dfd);
        this.cache.reserve();
        const pfd = this.openProc(fd, O_PATH);
        // no name, no parent link: it cannot be reopened, so its fds are pinned
        entry = this.adopt(null, null, pfd, false);
      } catch (e) {
        CLOSE(fd);
        throw e;
      }
      const inode = this.store.get(entry.nodeid)!;
      inode.unlinked = true;
      inode.reopenable = false;
      this.cache.setPermanent(inode.fdKey, true);
      const h = this.handles.add(inode, 'file', f);
      this.cache.insertPinned(h.fdKey, fd, 'file', true);
      this.cache.unpin(h.fdKey, fd);
      return { entry, open: { fh: h.fh, openFlags: fileOpenFlags(this.opts.cache) } };
    } finally {
      this.releaseInode(parent, dfd);
    }
  }

  override async read(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, size: number, into?: Buffer): Promise<Buffer> {
    const h = this.handles.get(fh, nodeid, 'file');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
    const buf = into && into.length >= size ? into : Buffer.allocUnsafe(size);
    const n = await this.withFileAsync(h, (fd) => this.readAt(fd, buf, size, offset, h.inode.dev));
    return n === size ? buf : buf.subarray(0, n);
  }

  override async write(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, data: Buffer, writeFlags: number): Promise<number> {
    const h = this.handles.get(fh, nodeid, 'file');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
    // O_APPEND (kept across reopen): write(2) appends wherever the host's end is
    const pos = h.flags & O_APPEND ? -1 : offset;
    return this.withFileAsync(h, async (fd) => {
      const n = await this.writeAt(fd, data, pos, h.inode.dev);
      if (this.killPrivV2 && writeFlags & WRITE_KILL_SUIDGID) this.killSuidgid(fd);
      return n;
    });
  }

  /**
   * Serving I/O without stalling the loop on the disk. Page-cache hits are served at once on this
   * thread (RWF_NOWAIT); what would block goes to the pool. A short non-blocking read ends at EOF
   * when the file ends there (fstat), and is otherwise finished the slow way. Where the filesystem
   * cannot tell (RWF_NOWAIT unsupported: tmpfs, and buffered writes on ext4), requests up to
   * INLINE_IO_MAX are done here too, as virtiofsd does all of them by default: a pool round trip
   * costs more than copying that much into the page cache. A filesystem (device) that refused
   * RWF_NOWAIT once is not asked again.
   */
  private readAt(fd: number, buf: Buffer, size: number, offset: number, dev: number): number | Promise<number> {
    const r = this.noNowait.read.has(dev) ? -E.EOPNOTSUPP : sys.preadNowait(fd, buf, 0, size, offset);
    if (r === size) return r;
    if (r < 0 && r !== -E.EAGAIN) {
      this.refusedNowait(this.noNowait.read, dev, r);
      if (size <= INLINE_IO_MAX) return sys.pread(fd, buf, 0, size, offset);
      return sys.preadAsync(fd, buf, 0, size, offset);
    }
    const fast = r < 0 ? 0 : r;
    if (BigInt(offset + fast) >= statAt(fd, EMPTY, AT_EMPTY_PATH).size) return fast;
    return sys.preadAsync(fd, buf, fast, size - fast, offset + fast).then((m) => fast + m);
  }

  /** pos -1: at the file's end (O_APPEND). See readAt. */
  private writeAt(fd: number, data: Buffer, pos: number, dev: number): number | Promise<number> {
    const len = data.length;
    const r = pos >= 0 && !this.noNowait.write.has(dev) ? sys.pwriteNowait(fd, data, 0, len, pos) : -E.EOPNOTSUPP;
    if (r === len) return r;
    if (r < 0 && r !== -E.EAGAIN) {
      if (pos >= 0) this.refusedNowait(this.noNowait.write, dev, r);
      if (len <= INLINE_IO_MAX) return sys.pwrite(fd, data, 0, len, pos);
      return sys.pwriteAsync(fd, data, 0, len, pos);
    }
    const fast = r < 0 ? 0 : r;
    return sys.pwriteAsync(fd, data, fast, len - fast, pos + fast).then((m) => fast + m);
  }

  private refusedNowait(set: Set<number>, dev: number, r: number): void {
    if (r !== -E.EOPNOTSUPP || set.has(dev)) return;
    set.add(dev);
    this.nowaitRefusals++;
  }

  override async flush(_ctx: Context, nodeid: bigint, fh: bigint, lockOwner: bigint): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'file');
    // close(2) drops the POSIX locks of the closing process (the FLUSH's lock owner). Our locks are
    // OFD locks on this fh: drop them only when that owner took some, so that a forked child
    // closing its inherited copy, or an OFD lock's dup being closed, leaves them alone.
    if (h.lockOwners?.delete(lockOwner)) {
      this.withFile(h, (fd) => {
        try {
          sys.ofdSetlk(fd, F_UNLCK, SEEK_SET, 0, 0);
        } catch {
          /* nothing held */
        }
      });
    }
  }

  override async fsync(_ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'file');
    await this.withFileAsync(h, (fd) => sys.fsyncAsync(fd, datasync));
  }

  override async fallocate(_ctx: Context, nodeid: bigint, fh: bigint, mode: number, offset: number, length: number): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'file');
    await this.withFileAsync(h, (fd) => sys.fallocateAsync(fd, mode, offset, length));
  }

  override async release(_ctx: Context, nodeid: bigint, fh: bigint, _flags: number, _lockOwner: bigint, _flockRelease: boolean): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'file');
    this.closeHandle(h);
  }

  private closeHandle(h: OpenHandle): void {
    if (h.backingId !== null && this.backing) {
      try {
        this.backing.close(h.backingId);
      } catch {
        /* the connection is gone: so is the backing file */
      }
      h.backingId = null;
    }
    this.handles.remove(h);
    this.cache.remove(h.fdKey);
    this.store.maybeDrop(h.inode);
  }

  override async lseek(_ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, whence: number): Promise<bigint> {
    const h = this.handles.get(fh, nodeid, 'file');
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FsError(E.EINVAL);
    return this.withFile(h, (fd) => sys.lseek(fd, offset, whence));
  }

  override async copyFileRange(
    _ctx: Context, nodeIn: bigint, fhIn: bigint, offIn: number, nodeOut: bigint, fhOut: bigint, offOut: number, len: number, flags: number,
  ): Promise<number> {
    const hi = this.handles.get(fhIn, nodeIn, 'file');
    const ho = this.handles.get(fhOut, nodeOut, 'file');
    const fdi = this.acquireFile(hi);
    try {
      const fdo = this.acquireFile(ho);
      try {
        return await sys.copyFileRangeAsync(fdi, offIn, fdo, offOut, len, flags);
      } finally {
        this.releaseFile(ho, fdo);
      }
    } finally {
      this.releaseFile(hi, fdi);
    }
  }

  override async statfs(_ctx: Context, nodeid: bigint): Promise<StatfsOut> {
    const s = this.withFd(this.inode(nodeid), (fd) => sysStatfs(fd));
    return s;
  }

  override async syncfs(_ctx: Context, _nodeid: bigint): Promise<void> {
    sys.syncfs(this.rootDirFd);
  }

  // ------------------------------------------------------------------ xattrs

  private checkXattrName(name: Buffer): void {
    if (name.length === 0 || name.indexOf(0) >= 0) throw new FsError(E.EINVAL);
    if (name.length > 255) throw new FsError(E.ERANGE);
  }

  /** fn on the fd of a file open on `inode` when one is cached (proven inside), else null. */
  private withOpenFile(inode: Inode, fn: (fd: number) => number): number | null {
    const h = inode.openFile;
    if (!h || !this.opts.xattr) return null;
    const fd = this.cache.pin(h.fdKey);
    if (fd === undefined) return null;
    try {
      this.confirmInside(inode, fd);
      return fn(fd);
    } finally {
      this.cache.unpin(h.fdKey, fd);
    }
  }

  /**
   * xattrs through /proc/self/fd/N of the inode's O_PATH fd with the FOLLOWING calls: the magic
   * link resolves to the fd's own file (the symlink itself for a symlink), nothing is opened for
   * I/O, and f*xattr would refuse the O_PATH fd.
   */
  private xattrOp<T>(inode: Inode, fn: (p: Buffer) => T): T {
    if (!this.opts.xattr) throw new FsError(E.ENOSYS);
    return this.withFd(inode, (fd) => {
      this.confirmInside(inode, fd);
      return fn(procFdPath(fd));
    });
  }

  override async setxattr(_ctx: Context, nodeid: bigint, name: Buffer, value: Buffer, flags: number): Promise<void> {
    this.checkXattrName(name);
    if (value.length > XATTR_SIZE_MAX) throw new FsError(E.E2BIG ?? E.ERANGE);
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) throw new FsError(E.EINVAL);
    this.xattrOp(this.inode(nodeid), (p) => sys.setxattr(p, name, value, flags));
  }

  override async getxattr(_ctx: Context, nodeid: bigint, name: Buffer, size: number): Promise<XattrReply> {
    this.checkXattrName(name);
    const inode = this.inode(nodeid);
    const buf = size === 0 ? null : Buffer.allocUnsafe(Math.min(size, XATTR_SIZE_MAX));
    // ENODATA is the usual answer: the kernel asks for security.capability before a file's first
    // write, while the writer holds it open, so the open file's fd answers without a /proc walk
    let n = this.withOpenFile(inode, (fd) => sys.fgetxattrTry(fd, name, buf));
    if (n === null) n = this.xattrOp(inode, (p) => sys.getxattrTry(p, name, buf));
    if (n < 0) throw new FsError(-n, 'getxattr');
    if (buf === null) return { size: n };
    return { value: buf.subarray(0, n) };
  }

  override async listxattr(_ctx: Context, nodeid: bigint, size: number): Promise<XattrReply> {
    const inode = this.inode(nodeid);
    if (size === 0) return { size: this.xattrOp(inode, (p) => sys.listxattr(p, null)) };
    const buf = Buffer.allocUnsafe(Math.min(size, XATTR_SIZE_MAX));
    const n = this.xattrOp(inode, (p) => sys.listxattr(p, buf));
    return { value: buf.subarray(0, n) };
  }

  override async removexattr(_ctx: Context, nodeid: bigint, name: Buffer): Promise<void> {
    this.checkXattrName(name);
    this.xattrOp(this.inode(nodeid), (p) => sys.removexattr(p, name));
  }

  // ------------------------------------------------------------------ directories

  override async opendir(_ctx: Context, nodeid: bigint, _flags: number): Promise<OpenOut> {
    const inode = this.inode(nodeid);
    if (inode.type !== S_IFDIR) throw new FsError(E.ENOTDIR);
    const fd = this.withFd(inode, (ifd) => {
      this.confirmInside(inode, ifd);
      this.cache.reserve();
      return this.openRetry(() => sys.openat(ifd, DOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
    });
    const h = this.handles.add(inode, 'dir', O_RDONLY | O_DIRECTORY);
    h.cursorValid = true;
    h.pendingFrom = 0n;
    this.cache.insertPinned(h.fdKey, fd, 'file', inode.unlinked);
    this.cache.unpin(h.fdKey, fd);
    return { fh: h.fh, openFlags: dirOpenFlags(this.opts.cache) };
  }

  /**
   * Walk the directory from cookie `offset`, handing each record to `visit` until it returns
   * false. Records read from the host but not taken stay in the handle, so the next call (which
   * resumes at the last taken record's cookie) needs no seek. Cookies are the host's d_off, valid
   * across calls, seekdir/telldir and fd eviction (the fd is re-seeked after a reopen).
   */
  private walkDir(h: OpenHandle, fd: number, offset: bigint, visit: (d: DirEntry) => boolean): void {
    if (!(h.cursorValid && h.pendingFrom === offset)) {
      sys.lseek(fd, offset, SEEK_SET);
      h.pending = [];
      h.pendingIdx = 0;
      h.pendingFrom = offset;
      h.cursorValid = true;
    }
    for (;;) {
      if (h.pendingIdx >= h.pending.length) {
        const n = sys.getdents64(fd, this.direntBuf);
        if (n === 0) {
          h.pending = [];
          h.pendingIdx = 0;
          return;
        }
        h.pending = parseDirents(this.direntBuf, n);
        h.pendingIdx = 0;
      }
      const d = h.pending[h.pendingIdx]!;
      if (!visit(d)) return;
      h.pendingIdx++;
      h.pendingFrom = d.off;
    }
  }

  override async readdir(_ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, _size: number, add: (e: DirEntry) => boolean): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'dir');
    this.withFile(h, (fd) => {
      this.confirmInside(h.inode, fd);
      this.walkDir(h, fd, offset, add);
    });
  }

  override async readdirplus(
    _ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, _size: number, add: (e: DirEntry, entry: Entry | null) => boolean,
  ): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'dir');
    const dir = h.inode;
    this.withFile(h, (fd) => {
      this.confirmInside(dir, fd);
      this.walkDir(h, fd, offset, (d) => {
        if (isDotName(d.name)) return add(d, null);
        let e: Entry;
        try {
          e = this.lookupAt(dir, fd, d.name);
        } catch (err) {
          const errno = toErrno(err);
          // vanished between getdents and the lookup: list it without attributes
          if (errno === E.ENOENT) return add(d, null);
          throw err;
        }
        if (add(d, e)) return true;
        const inode = this.store.get(e.nodeid);
        if (inode) this.store.forget(inode, 1); // not sent: undo its lookup
        return false;
      });
    });
  }

  override async releasedir(_ctx: Context, nodeid: bigint, fh: bigint): Promise<void> {
    this.closeHandle(this.handles.get(fh, nodeid, 'dir'));
  }

  override async fsyncdir(_ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'dir');
    await this.withFileAsync(h, (fd) => sys.fsyncAsync(fd, datasync));
  }

  // ------------------------------------------------------------------ permissions and locks

  override async access(ctx: Context, nodeid: bigint, mask: number): Promise<void> {
    const inode = this.inode(nodeid);
    this.withFd(inode, (fd) => {
      if (!this.isRoot || ctx.uid === 0) {
        sys.faccessat2(fd, EMPTY, mask, AT_EMPTY_PATH | AT_EACCESS);
        return;
      }
      // the server is root: check the requester's rights against the mode bits (owner, group, other)
      const st = statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      const bits = st.uid === ctx.uid ? (st.mode >> 6) & 7 : st.gid === ctx.gid ? (st.mode >> 3) & 7 : st.mode & 7;
      const want = (mask & R_OK ? 4 : 0) | (mask & W_OK ? 2 : 0) | (mask & X_OK ? 1 : 0);
      if ((bits & want) !== want) throw new FsError(E.EACCES);
    });
  }

  override async getlk(_ctx: Context, nodeid: bigint, fh: bigint, _owner: bigint, lock: FileLock): Promise<FileLock> {
    const h = this.handles.get(fh, nodeid, 'file');
    const [start, len] = lockRange(lock);
    const r = this.withFile(h, (fd) => sys.ofdGetlk(fd, lock.type, SEEK_SET, start, len));
    if (r.type === F_UNLCK) return { start: 0n, end: 0n, type: F_UNLCK, pid: 0 };
    return { start: BigInt(r.start), end: r.len === 0 ? OFFSET_MAX : BigInt(r.start + r.len - 1), type: r.type, pid: r.pid > 0 ? r.pid : 0 };
  }

  override async setlk(_ctx: Context, nodeid: bigint, fh: bigint, owner: bigint, lock: FileLock, sleep: boolean, isFlock: boolean): Promise<void> {
    const h = this.handles.get(fh, nodeid, 'file');
    if (!isFlock && lock.type !== F_UNLCK) (h.lockOwners ??= new Set()).add(owner);
    if (lock.type !== F_RDLCK && lock.type !== F_WRLCK && lock.type !== F_UNLCK) throw new FsError(E.EINVAL);
    if (lock.type !== F_UNLCK && !h.locked) {
      // a lock lives on the open file description: that fd must never be closed under it
      h.locked = true;
      this.cache.setPermanent(h.fdKey, true);
    }
    await this.withFileAsync(h, async (fd) => {
      if (isFlock) {
        const op = lock.type === F_RDLCK ? LOCK_SH : lock.type === F_WRLCK ? LOCK_EX : LOCK_UN;
        if (sleep && op !== LOCK_UN) await sys.flockWait(fd, op);
        else sys.flock(fd, op | LOCK_NB);
        return;
      }
      const [start, len] = lockRange(lock);
      if (sleep && lock.type !== F_UNLCK) await sys.ofdSetlkw(fd, lock.type, SEEK_SET, start, len);
      else sys.ofdSetlk(fd, lock.type, SEEK_SET, start, len);
    });
  }
}

/** One number for a device (major, minor). */
function devOf(st: Stat): number {
  return st.devMajor * 0x100000 + st.devMinor;
}

function lockRange(lock: FileLock): [number, number] {
  const start = lock.start > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(lock.start);
  if (lock.end >= OFFSET_MAX || lock.end < lock.start) return [start, 0];
  const len = lock.end - lock.start + 1n;
  return [start, len > BigInt(Number.MAX_SAFE_INTEGER) ? 0 : Number(len)];
}

function sysStatfs(fd: number): StatfsOut {
  const s = statfsFd(fd);
  return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: Number(s.bsize), namelen: Number(s.namelen), frsize: Number(s.frsize) };
}

/** AT_HANDLE_MNT_ID_UNIQUE (6.12+) gives 64-bit mount ids that are never reused; older kernels: EINVAL. */
function probeHandleFlags(rootFd: number): number {
  try {
    sys.nameToHandleAt(rootFd, EMPTY, AT_EMPTY_PATH | AT_HANDLE_MNT_ID_UNIQUE);
    return AT_HANDLE_MNT_ID_UNIQUE;
  } catch {
    return 0;
  }
}

function probeOpenByHandle(mountFd: number, h: FileHandle): boolean {
  try {
    const fd = sys.openByHandleAt(mountFd, h.type, h.bytes, O_PATH | O_CLOEXEC);
    sys.close(fd);
    return true;
  } catch {
    return false;
  }
}

/** Budget from RLIMIT_NOFILE: the soft limit minus a reserve for the server's own fds. */
function autoBudget(): number {
  const soft = nofileLimit().soft;
  const lim = soft < 0 ? 1 << 20 : soft;
  return Math.max(16, Math.min(lim - 64 - FD_RESERVE, 1 << 20));
}

