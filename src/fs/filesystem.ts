/**
 * The contract between a transport (raw FUSE protocol server, fuse-native adapter, later
 * virtio-fs) and a filesystem, modelled on virtiofsd's `FileSystem` trait and go-fuse's
 * RawFileSystem. Methods are named after FUSE opcodes.
 *
 * Rules every implementation follows and every transport may rely on:
 * - Failure is a thrown FsError (src/errors.ts) with a positive `.errno`. The transport turns it
 *   into `-errno` on the wire (raw) or `cb(-errno)` (fuse-native). Any other thrown value is a bug
 *   and is answered EIO.
 * - ENOSYS from an operation means "not implemented": the kernel remembers it for some opcodes
 *   (FLUSH, FSYNC, XATTR, ACCESS, CREATE, FALLOCATE, LSEEK, COPY_FILE_RANGE, ...) and stops
 *   sending them.
 * - Node ids are opaque 64-bit numbers chosen by the filesystem; 1n is the root (FUSE_ROOT_ID).
 *   They are never host inode numbers.
 * - Lookup counts: every Entry with a non-zero nodeid returned by lookup, mknod, mkdir, symlink,
 *   link, create, tmpfile and readdirplus (for entries actually added) increments that node's
 *   lookup count by one. forget(n) decrements it; at zero the filesystem may drop the node. A count
 *   going below zero is a client bug: it saturates at zero and is logged, never an abort.
 * - `fh` values come from open/opendir/create; an fh that does not belong to the given nodeid is
 *   EBADF. The client may be hostile: every id is checked.
 * - Names are single path components as raw bytes: non-empty, no '/', no NUL, at most 255 bytes
 *   (EINVAL / ENAMETOOLONG otherwise). '.' and '..' are valid only for lookup.
 * - Name and data Buffers (names, symlink targets, xattr values, write data) are views into the
 *   request buffer: valid until the returned promise settles. Copy what you keep longer.
 * - Offsets for regular files are byte offsets (numbers, exact below 2^53). Directory offsets are
 *   opaque 64-bit cookies (bigint): 0 starts a listing, and the `off` of an entry resumes after it.
 */
import { enosys, type FsError } from '../errors.js';
import type { MappedSeg } from '../sys/syscalls.js';

/** Memory a transport mapped, as the addon takes it (a mapping, an offset in it, a length). */
export type { MappedSeg };
import type {
  AttrReply, Context, CreateOut, DeviceNumber, FileOffset, DirEntry, Entry, FileLock, InitOptions, OpenOut, SetattrIn,
  StatfsOut, XattrReply,
} from './types.js';

export const ROOT_ID = 1n;

export interface FileSystem {
  /** Called once after INIT negotiation, before any other operation. */
  init(opts: InitOptions): Promise<void>;
  /** Called on DESTROY or when the session ends: release every fd. */
  destroy(): Promise<void>;

  /**
   * Look up `name` in directory `parent`; '.' is the directory itself, '..' its parent ('..' of
   * the root is the root). A missing name may resolve to an FsError (errors.ts failure()) instead
   * of rejecting: callers check for one.
   */
  lookup(ctx: Context, parent: bigint, name: Buffer): Promise<Entry | FsError>;
  /** Drop `nlookup` lookups of a node. Never replied to. Must not throw. */
  forget(ctx: Context, nodeid: bigint, nlookup: bigint): void;
  batchForget(ctx: Context, items: ReadonlyArray<{ nodeid: bigint; nlookup: bigint }>): void;

  /** `fh` is given when the client asks for an open file's attributes (FUSE_GETATTR_FH). */
  getattr(ctx: Context, nodeid: bigint, fh?: bigint): Promise<AttrReply>;
  /** Apply the fields selected by `s.valid` (FATTR_*). Times with *_NOW set use the current time. */
  setattr(ctx: Context, nodeid: bigint, s: SetattrIn): Promise<AttrReply>;
  /** Extended attributes in one call: `mask` is STATX_*; flags are AT_STATX_* sync flags. */
  statx(ctx: Context, nodeid: bigint, fh: bigint | undefined, flags: number, mask: number): Promise<AttrReply>;

  readlink(ctx: Context, nodeid: bigint): Promise<Buffer>;
  symlink(ctx: Context, target: Buffer, parent: bigint, name: Buffer): Promise<Entry>;
  /**
   * `mode` includes the file type; `umask` applies when the client did not apply it (DONT_MASK).
   * `rdev` is the device number of a device special file (0:0 otherwise).
   */
  mknod(ctx: Context, parent: bigint, name: Buffer, mode: number, rdev: DeviceNumber, umask: number): Promise<Entry>;
  mkdir(ctx: Context, parent: bigint, name: Buffer, mode: number, umask: number): Promise<Entry>;
  unlink(ctx: Context, parent: bigint, name: Buffer): Promise<void>;
  rmdir(ctx: Context, parent: bigint, name: Buffer): Promise<void>;
  /** flags: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT (0 for plain rename). */
  rename(ctx: Context, olddir: bigint, oldname: Buffer, newdir: bigint, newname: Buffer, flags: number): Promise<void>;
  link(ctx: Context, nodeid: bigint, newparent: bigint, newname: Buffer): Promise<Entry>;

  /**
   * open(2) flags as the client sent them (O_CREAT/O_EXCL never set; O_TRUNC only with ATOMIC_O_TRUNC).
   * `killSuidgid` (FUSE_OPEN_KILL_SUIDGID, with HANDLE_KILLPRIV_V2): an O_TRUNC open by someone
   * without CAP_FSETID must clear the file's setuid/setgid bits, as truncate(2) would.
   */
  open(ctx: Context, nodeid: bigint, flags: number, killSuidgid?: boolean): Promise<OpenOut>;
  /** Atomic create+open; O_EXCL honoured. */
  create(ctx: Context, parent: bigint, name: Buffer, mode: number, flags: number, umask: number): Promise<CreateOut>;
  /** O_TMPFILE in directory `parent`: an unnamed file, open, pinned until released. */
  tmpfile(ctx: Context, parent: bigint, mode: number, flags: number, umask: number): Promise<CreateOut>;
  /**
   * Read up to `size` bytes at `offset`; fewer only at EOF. With `into` (at least `size` bytes) the
   * bytes may be read into it and a view of it returned (the protocol layer then sends them
   * without a copy); callers accept any Buffer back.
   */
  read(ctx: Context, nodeid: bigint, fh: bigint, offset: number, size: number, into?: Buffer): Promise<Buffer>;
  /**
   * Write `data` at `offset` and return the count written. On a file opened O_APPEND without
   * writeback cache the offset is ignored and the data appended (the host decides where).
   * writeFlags: WRITE_CACHE, WRITE_LOCKOWNER, WRITE_KILL_SUIDGID.
   */
  write(ctx: Context, nodeid: bigint, fh: bigint, offset: number, data: Buffer, writeFlags: number): Promise<number>;
  /**
   * READ and WRITE with the data in memory a transport has mapped (a VM guest's pages), moved by
   * the kernel (preadv/pwritev) without a Buffer in between; the count moved. `size` bytes fill
   * `into` in order; `from` holds the bytes to write. Same semantics as read and write otherwise.
   */
  readMapped(ctx: Context, nodeid: bigint, fh: bigint, offset: number, size: number, into: MappedSeg[]): Promise<number>;
  writeMapped(ctx: Context, nodeid: bigint, fh: bigint, offset: number, from: MappedSeg[], writeFlags: number): Promise<number>;
  /** Called on every close(2) of a client fd; may be called several times per open. */
  flush(ctx: Context, nodeid: bigint, fh: bigint, lockOwner: bigint): Promise<void>;
  fsync(ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void>;
  /** `offset` and `length` beyond 2^53 come as bigints: the host answers them (EFBIG, EINVAL). */
  fallocate(ctx: Context, nodeid: bigint, fh: bigint, mode: number, offset: FileOffset, length: FileOffset): Promise<void>;
  /** Last close of an open: release the fh. `flockRelease` asks to drop the owner's flock. */
  release(ctx: Context, nodeid: bigint, fh: bigint, flags: number, lockOwner: bigint, flockRelease: boolean): Promise<void>;
  /** lseek with SEEK_DATA/SEEK_HOLE (SEEK_SET/CUR/END are handled by the kernel). */
  lseek(ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, whence: number): Promise<bigint>;
  /** Offsets beyond 2^53 come as bigints: the host answers them (EFBIG for a destination beyond its maximum file size). */
  copyFileRange(
    ctx: Context, nodeIn: bigint, fhIn: bigint, offIn: FileOffset,
    nodeOut: bigint, fhOut: bigint, offOut: FileOffset, len: number, flags: number,
  ): Promise<number>;

  statfs(ctx: Context, nodeid: bigint): Promise<StatfsOut>;
  syncfs(ctx: Context, nodeid: bigint): Promise<void>;

  setxattr(ctx: Context, nodeid: bigint, name: Buffer, value: Buffer, flags: number): Promise<void>;
  /**
   * size 0 asks for the value's size; a value larger than `size` is ERANGE. A failure of the host's
   * call (ENODATA, the common answer) may resolve to an FsError instead of rejecting.
   */
  getxattr(ctx: Context, nodeid: bigint, name: Buffer, size: number): Promise<XattrReply | FsError>;
  /** NUL-separated names; size 0 asks for the list's size. */
  listxattr(ctx: Context, nodeid: bigint, size: number): Promise<XattrReply>;
  removexattr(ctx: Context, nodeid: bigint, name: Buffer): Promise<void>;

  opendir(ctx: Context, nodeid: bigint, flags: number): Promise<OpenOut>;
  /**
   * List entries starting after cookie `offset` (0 = start). Call `add` for each; when it returns
   * false the reply is full and that entry was NOT taken: stop, so the next call resumes with it.
   * `size` is the client's buffer size, a hint.
   */
  readdir(ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, size: number, add: (e: DirEntry) => boolean): Promise<void>;
  /**
   * Like readdir with an Entry per name (looked up, counted). When `add` returns false the
   * lookup of that entry is undone by the filesystem. '.' and '..' get no lookup (entry null).
   */
  readdirplus(
    ctx: Context, nodeid: bigint, fh: bigint, offset: bigint, size: number,
    add: (e: DirEntry, entry: Entry | null) => boolean,
  ): Promise<void>;
  releasedir(ctx: Context, nodeid: bigint, fh: bigint): Promise<void>;
  fsyncdir(ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void>;

  /** access(2) check with `mask` (R_OK|W_OK|X_OK or F_OK) for ctx's credentials. */
  access(ctx: Context, nodeid: bigint, mask: number): Promise<void>;

  /** F_OFD_GETLK for `owner`: the conflicting lock or one with type F_UNLCK. */
  getlk(ctx: Context, nodeid: bigint, fh: bigint, owner: bigint, lock: FileLock): Promise<FileLock>;
  /** F_OFD_SETLK(W) or flock (when `isFlock`); `sleep` waits for the lock. */
  setlk(ctx: Context, nodeid: bigint, fh: bigint, owner: bigint, lock: FileLock, sleep: boolean, isFlock: boolean): Promise<void>;
}

/**
 * Every operation answers ENOSYS (virtiofsd's trait defaults, go-fuse's
 * NewDefaultRawFileSystem). Filesystems and test stubs extend it and override what they support.
 */
export class DefaultFileSystem implements FileSystem {
  async init(_opts: InitOptions): Promise<void> {}
  async destroy(): Promise<void> {}
  async lookup(_c: Context, _p: bigint, _n: Buffer): Promise<Entry | FsError> { throw enosys(); }
  forget(_c: Context, _n: bigint, _k: bigint): void {}
  batchForget(c: Context, items: ReadonlyArray<{ nodeid: bigint; nlookup: bigint }>): void {
    for (const it of items) this.forget(c, it.nodeid, it.nlookup);
  }
  async getattr(_c: Context, _n: bigint, _fh?: bigint): Promise<AttrReply> { throw enosys(); }
  async setattr(_c: Context, _n: bigint, _s: SetattrIn): Promise<AttrReply> { throw enosys(); }
  async statx(_c: Context, _n: bigint, _fh: bigint | undefined, _f: number, _m: number): Promise<AttrReply> { throw enosys(); }
  async readlink(_c: Context, _n: bigint): Promise<Buffer> { throw enosys(); }
  async symlink(_c: Context, _t: Buffer, _p: bigint, _n: Buffer): Promise<Entry> { throw enosys(); }
  async mknod(_c: Context, _p: bigint, _n: Buffer, _m: number, _r: DeviceNumber, _u: number): Promise<Entry> { throw enosys(); }
  async mkdir(_c: Context, _p: bigint, _n: Buffer, _m: number, _u: number): Promise<Entry> { throw enosys(); }
  async unlink(_c: Context, _p: bigint, _n: Buffer): Promise<void> { throw enosys(); }
  async rmdir(_c: Context, _p: bigint, _n: Buffer): Promise<void> { throw enosys(); }
  async rename(_c: Context, _od: bigint, _on: Buffer, _nd: bigint, _nn: Buffer, _f: number): Promise<void> { throw enosys(); }
  async link(_c: Context, _n: bigint, _np: bigint, _nn: Buffer): Promise<Entry> { throw enosys(); }
  async open(_c: Context, _n: bigint, _f: number, _k?: boolean): Promise<OpenOut> { throw enosys(); }
  async create(_c: Context, _p: bigint, _n: Buffer, _m: number, _f: number, _u: number): Promise<CreateOut> { throw enosys(); }
  async tmpfile(_c: Context, _p: bigint, _m: number, _f: number, _u: number): Promise<CreateOut> { throw enosys(); }
  async read(_c: Context, _n: bigint, _fh: bigint, _o: number, _s: number, _into?: Buffer): Promise<Buffer> { throw enosys(); }
  async write(_c: Context, _n: bigint, _fh: bigint, _o: number, _d: Buffer, _w: number): Promise<number> { throw enosys(); }
  async readMapped(_c: Context, _n: bigint, _fh: bigint, _o: number, _s: number, _i: MappedSeg[]): Promise<number> { throw enosys(); }
  async writeMapped(_c: Context, _n: bigint, _fh: bigint, _o: number, _f: MappedSeg[], _w: number): Promise<number> { throw enosys(); }
  async flush(_c: Context, _n: bigint, _fh: bigint, _l: bigint): Promise<void> { throw enosys(); }
  async fsync(_c: Context, _n: bigint, _fh: bigint, _d: boolean): Promise<void> { throw enosys(); }
  async fallocate(_c: Context, _n: bigint, _fh: bigint, _m: number, _o: FileOffset, _l: FileOffset): Promise<void> { throw enosys(); }
  async release(_c: Context, _n: bigint, _fh: bigint, _f: number, _l: bigint, _fr: boolean): Promise<void> {}
  async lseek(_c: Context, _n: bigint, _fh: bigint, _o: bigint, _w: number): Promise<bigint> { throw enosys(); }
  async copyFileRange(_c: Context, _ni: bigint, _fi: bigint, _oi: FileOffset, _no: bigint, _fo: bigint, _oo: FileOffset, _l: number, _f: number): Promise<number> { throw enosys(); }
  async statfs(_c: Context, _n: bigint): Promise<StatfsOut> { throw enosys(); }
  async syncfs(_c: Context, _n: bigint): Promise<void> { throw enosys(); }
  async setxattr(_c: Context, _n: bigint, _k: Buffer, _v: Buffer, _f: number): Promise<void> { throw enosys(); }
  async getxattr(_c: Context, _n: bigint, _k: Buffer, _s: number): Promise<XattrReply | FsError> { throw enosys(); }
  async listxattr(_c: Context, _n: bigint, _s: number): Promise<XattrReply> { throw enosys(); }
  async removexattr(_c: Context, _n: bigint, _k: Buffer): Promise<void> { throw enosys(); }
  async opendir(_c: Context, _n: bigint, _f: number): Promise<OpenOut> { throw enosys(); }
  async readdir(_c: Context, _n: bigint, _fh: bigint, _o: bigint, _s: number, _a: (e: DirEntry) => boolean): Promise<void> { throw enosys(); }
  async readdirplus(_c: Context, _n: bigint, _fh: bigint, _o: bigint, _s: number, _a: (e: DirEntry, en: Entry | null) => boolean): Promise<void> { throw enosys(); }
  async releasedir(_c: Context, _n: bigint, _fh: bigint): Promise<void> {}
  async fsyncdir(_c: Context, _n: bigint, _fh: bigint, _d: boolean): Promise<void> { throw enosys(); }
  async access(_c: Context, _n: bigint, _m: number): Promise<void> { throw enosys(); }
  async getlk(_c: Context, _n: bigint, _fh: bigint, _o: bigint, _l: FileLock): Promise<FileLock> { throw enosys(); }
  async setlk(_c: Context, _n: bigint, _fh: bigint, _o: bigint, _l: FileLock, _s: boolean, _f: boolean): Promise<void> { throw enosys(); }
}
