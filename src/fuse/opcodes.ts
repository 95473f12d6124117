/**
 * The opcode table (go-fuse opcode.go): one row per FUSE opcode with its argument struct, how many
 * NUL-terminated names follow it, whether the kernel expects a reply, and the handler that turns
 * the parsed request into a FileSystem call and the call's result into reply bytes.
 *
 * Handlers may throw: an FsError (or any errno-carrying error) becomes `-errno` in the reply, a
 * ProtocolError is a malformed request, anything else is a bug answered EIO (protocol-server.ts).
 * Rows with a null handler (BMAP, IOCTL, POLL, SETUPMAPPING, ...) answer ENOSYS.
 */
import { E, fsErr, FsError, ProtocolError } from '../errors.js';
import type { FileSystem } from '../fs/filesystem.js';
import type { AttrReply, Context, CreateOut, Entry, OpenOut as OpenOutT, XattrReply } from '../fs/types.js';
import {
  AccessIn, AttrOut, BatchForgetIn, BmapIn, CopyFileRangeIn, CopyFileRangeOut, CreateIn, EntryOut, FallocateIn,
  FlushIn, ForgetIn, ForgetOne, FsyncIn, GetattrIn, GetxattrIn, InitIn, InterruptIn, IoctlIn,
  Kstatfs, LinkIn, LkIn, LkOut, LseekIn, LseekOut, MkdirIn, MknodIn, OpenIn, OpenOut, OutHeader, PollIn, ReadIn,
  ReleaseIn, Rename2In, RenameIn, SetattrIn, SetxattrIn, StatxIn, StatxOut, SyncfsIn, WriteIn,
  readFileLock, readSetattrIn, readU64Num, r64, w64, writeAttrOut, writeEntryOut, writeFileLock, writeKstatfs, writeOpenOut,
  writeStatxOut, writeU64, type Struct,
} from './abi.js';
import { allocReply, encodeError, encodeReply, IN, writeReplyHeader, type Request } from './codec.js';
import { DirentList } from './dirent-list.js';
import { securityContext } from './extensions.js';
import { decodeDev32 } from '../sys/stat.js';
import { FOPEN_PASSTHROUGH, FUSE_FSYNC_FDATASYNC, FUSE_GETATTR_FH, FUSE_LK_FLOCK, FUSE_RELEASE_FLOCK_UNLOCK } from './flags.js';

/** Opcode numbers (enum fuse_opcode). */
export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9, UNLINK: 10,
  RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18, FSYNC: 20,
  SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25, INIT: 26, OPENDIR: 27, READDIR: 28,
  RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32, SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36,
  BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40, NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43,
  READDIRPLUS: 44, RENAME2: 45, LSEEK: 46, COPY_FILE_RANGE: 47, SETUPMAPPING: 48, REMOVEMAPPING: 49,
  SYNCFS: 50, TMPFILE: 51, STATX: 52, COPY_FILE_RANGE_64: 53,
} as const;

/** What a handler may use of the server: the filesystem, the negotiated connection, session ops. */
export interface Session {
  readonly fs: FileSystem;
  readonly conn: Conn;
  /** A buffer for a large reply (READ): pooled when the transport gives replies back (ProtocolServer.recycle). */
  replyBuffer(size: number): Buffer;
  /** A reply buffer that will not be sent after all. */
  recycle(reply: Buffer): void;
  doInit(r: Request): Promise<Buffer>;
  doDestroy(r: Request): Promise<Buffer>;
  doInterrupt(r: Request): null;
  /** The requester's supplementary groups, when the transport can tell (ProtocolOptions.requesterGroups). */
  requesterGroups(pid: number): readonly number[] | null;
}

/** Connection facts the handlers need, fixed at INIT. */
export interface Conn {
  minor: number;
  setxattrExt: boolean;
  passthrough: boolean;
  /** FUSE_SECURITY_CTX: creating requests carry the new node's security label in an extension */
  securityCtx: boolean;
  /** Largest READ size the kernel may ask for (max_pages pages); bigger is a malformed request. */
  maxRead: number;
  /** Cap for READDIR buffers and xattr sizes we allocate for. */
  maxReply: number;
}

type Handler = (s: Session, r: Request) => Promise<Buffer | null>;

export interface OpcodeRow {
  readonly name: string;
  readonly in: Struct | null;
  readonly names: 0 | 1 | 2;
  readonly noReply: boolean;
  readonly handler: Handler | null;
}

// ---------------------------------------------------------------------------------------------
// Argument readers (offsets are relative to the in struct, which starts at IN)

const u32 = (r: Request, off: number): number => r.buf.readUInt32LE(IN + off);
const u64 = (r: Request, off: number): bigint => r64(r.buf, IN + off);
/** A byte offset/length as a number; values >= 2^53 cannot be exact: EINVAL. */
function num(r: Request, off: number): number {
  const n = readU64Num(r.buf, IN + off);
  if (n < 0) throw fsErr(E.EINVAL, 'offset or length beyond 2^53');
  return n;
}
/** A byte offset/length the host judges: a number below 2^53, the signed 64-bit value beyond. */
function pos(r: Request, off: number): number | bigint {
  const n = readU64Num(r.buf, IN + off);
  return n >= 0 ? n : BigInt.asIntN(64, r64(r.buf, IN + off));
}
/** `size` bytes of payload after the names (write data, xattr value), checked against the length. */
function payload(r: Request, size: number): Buffer {
  if (size > r.end - r.restOff) throw new ProtocolError('payload shorter than its declared size', E.EINVAL);
  return r.buf.subarray(r.restOff, r.restOff + size);
}

/** The requester of a creating request, with the new node's security label when one was sent. */
function creatorCtx(s: Session, r: Request): Context {
  if (!s.conn.securityCtx || r.end === r.buf.length) return r.ctx;
  const secctx = securityContext(r.buf, r.end, r.buf.length);
  return secctx === null ? r.ctx : { ...r.ctx, secctx };
}

// ---------------------------------------------------------------------------------------------
// Reply builders

const ok = (r: Request): Buffer => allocReply(r.unique, 0);

function entryReply(r: Request, e: Entry): Buffer {
  const b = allocReply(r.unique, EntryOut.SIZE);
  writeEntryOut(b, OutHeader.SIZE, e);
  return b;
}

function attrReply(r: Request, a: AttrReply): Buffer {
  const b = allocReply(r.unique, AttrOut.SIZE);
  writeAttrOut(b, OutHeader.SIZE, a);
  return b;
}

/** FOPEN_PASSTHROUGH is only meaningful when negotiated; otherwise it is dropped with the backing id. */
function openFlags(s: Session, o: OpenOutT): number {
  return s.conn.passthrough ? o.openFlags : o.openFlags & ~FOPEN_PASSTHROUGH;
}

function openReply(s: Session, r: Request, o: OpenOutT): Buffer {
  const b = allocReply(r.unique, OpenOut.SIZE);
  writeOpenOut(b, OutHeader.SIZE, s.conn.passthrough ? o : { fh: o.fh, openFlags: 0 }, openFlags(s, o));
  return b;
}

/** CREATE and TMPFILE: EntryOut followed by OpenOut. */
function createReply(s: Session, r: Request, c: CreateOut): Buffer {
  const b = allocReply(r.unique, EntryOut.SIZE + OpenOut.SIZE);
  writeEntryOut(b, OutHeader.SIZE, c.entry);
  writeOpenOut(b, OutHeader.SIZE + EntryOut.SIZE, s.conn.passthrough ? c.open : { fh: c.open.fh, openFlags: 0 }, openFlags(s, c.open));
  return b;
}

function u32Reply(r: Request, v: number): Buffer {
  const b = allocReply(r.unique, 8);
  b.writeUInt32LE(v >>> 0, OutHeader.SIZE);
  b.writeUInt32LE(0, OutHeader.SIZE + 4);
  return b;
}

/** GETXATTR/LISTXATTR: size 0 asks for the size (GetxattrOut), otherwise the bytes themselves. */
function xattrReply(r: Request, size: number, x: XattrReply): Buffer {
  const len = 'value' in x ? x.value.length : x.size;
  if (size === 0) return u32Reply(r, len);
  if (len > size) throw fsErr(E.ERANGE);
  if (!('value' in x)) throw new Error('filesystem answered a size to a non-zero-size xattr request');
  return encodeReply(r.unique, x.value);
}

// ---------------------------------------------------------------------------------------------
// Handlers, in opcode order

/** A missing name may come back as an FsError value (FileSystem.lookup): answered without a throw. */
const hLookup: Handler = async (s, r) => {
  const e = await s.fs.lookup(r.ctx, r.nodeid, r.name1!);
  return e instanceof FsError ? encodeError(r.unique, e.errno) : entryReply(r, e);
};

const hForget: Handler = async (s, r) => {
  s.fs.forget(r.ctx, r.nodeid, u64(r, ForgetIn.nlookup));
  return null;
};

const hGetattr: Handler = async (s, r) => {
  const fh = u32(r, GetattrIn.getattr_flags) & FUSE_GETATTR_FH ? u64(r, GetattrIn.fh) : undefined;
  return attrReply(r, await s.fs.getattr(r.ctx, r.nodeid, fh));
};

const hSetattr: Handler = async (s, r) => attrReply(r, await s.fs.setattr(r.ctx, r.nodeid, readSetattrIn(r.buf, IN)));

const hReadlink: Handler = async (s, r) => encodeReply(r.unique, await s.fs.readlink(r.ctx, r.nodeid));

/** Names: the new link's name, then the target. */
const hSymlink: Handler = async (s, r) => entryReply(r, await s.fs.symlink(creatorCtx(s, r), r.name2!, r.nodeid, r.name1!));

/** rdev arrives in the kernel's 32-bit encoding (new_encode_dev); the filesystem gets major and minor. */
const hMknod: Handler = async (s, r) => {
  const e = await s.fs.mknod(creatorCtx(s, r), r.nodeid, r.name1!, u32(r, MknodIn.mode), decodeDev32(u32(r, MknodIn.rdev)), u32(r, MknodIn.umask));
  return entryReply(r, e);
};

const hMkdir: Handler = async (s, r) =>
  entryReply(r, await s.fs.mkdir(creatorCtx(s, r), r.nodeid, r.name1!, u32(r, MkdirIn.mode), u32(r, MkdirIn.umask)));

const hUnlink: Handler = async (s, r) => {
  await s.fs.unlink(r.ctx, r.nodeid, r.name1!);
  return ok(r);
};

const hRmdir: Handler = async (s, r) => {
  await s.fs.rmdir(r.ctx, r.nodeid, r.name1!);
  return ok(r);
};

const hRename: Handler = async (s, r) => {
  await s.fs.rename(r.ctx, r.nodeid, r.name1!, u64(r, RenameIn.newdir), r.name2!, 0);
  return ok(r);
};

/** The request's nodeid is the new parent; LinkIn names the existing node. */
const hLink: Handler = async (s, r) => entryReply(r, await s.fs.link(r.ctx, u64(r, LinkIn.oldnodeid), r.nodeid, r.name1!));

/** open_flags bit 0 is FUSE_OPEN_KILL_SUIDGID (HANDLE_KILLPRIV_V2). */
const hOpen: Handler = async (s, r) => openReply(s, r, await s.fs.open(r.ctx, r.nodeid, u32(r, OpenIn.flags), (u32(r, OpenIn.open_flags) & 1) !== 0));

/** A READ larger than max_pages is not something the kernel sends; a short reply would mean EOF. */
const hRead: Handler = async (s, r) => {
  const size = u32(r, ReadIn.size);
  if (size > s.conn.maxRead) throw new ProtocolError('READ larger than max_pages', E.EINVAL);
  if (r.io?.readInto) {
    // straight into the client's memory: the reply is the header alone, its len counting the data
    // the transport already holds after it
    const n = await s.fs.readMapped(r.ctx, r.nodeid, u64(r, ReadIn.fh), num(r, ReadIn.offset), size, r.io.readInto);
    const h = allocReply(r.unique, 0);
    h.writeUInt32LE(OutHeader.SIZE + Math.min(n, size), OutHeader.len);
    return h;
  }
  // the reply is allocated first (or is the transport's own space) and the data read straight
  // into it (no second buffer, no copy)
  const space = r.io?.replySpace;
  const reply = space && space.length >= OutHeader.SIZE + size ? space.subarray(0, OutHeader.SIZE + size) : s.replyBuffer(OutHeader.SIZE + size);
  let data: Buffer;
  try {
    data = await s.fs.read(r.ctx, r.nodeid, u64(r, ReadIn.fh), num(r, ReadIn.offset), size, reply.subarray(OutHeader.SIZE, OutHeader.SIZE + size));
  } catch (e) {
    s.recycle(reply);
    throw e;
  }
  const n = Math.min(data.length, size);
  if (data.buffer === reply.buffer && data.byteOffset === reply.byteOffset + OutHeader.SIZE) {
    return writeReplyHeader(reply.subarray(0, OutHeader.SIZE + n), r.unique);
  }
  s.recycle(reply);
  return encodeReply(r.unique, data.length > size ? data.subarray(0, size) : data);
};

const hWrite: Handler = async (s, r) => {
  const size = u32(r, WriteIn.size);
  if (r.io?.payload) {
    // the data stayed in the client's memory: the header's len counted it (codec.parseHeader)
    if (size !== r.io.payloadBytes || r.restOff !== r.buf.length) throw new ProtocolError('WRITE size disagrees with its payload', E.EINVAL);
    const n = await s.fs.writeMapped(r.ctx, r.nodeid, u64(r, WriteIn.fh), num(r, WriteIn.offset), r.io.payload, u32(r, WriteIn.write_flags));
    return u32Reply(r, Math.min(n, size));
  }
  const data = payload(r, size);
  const n = await s.fs.write(r.ctx, r.nodeid, u64(r, WriteIn.fh), num(r, WriteIn.offset), data, u32(r, WriteIn.write_flags));
  return u32Reply(r, Math.min(n, data.length));
};

const hStatfs: Handler = async (s, r) => {
  const b = allocReply(r.unique, Kstatfs.SIZE);
  writeKstatfs(b, OutHeader.SIZE, await s.fs.statfs(r.ctx, r.nodeid));
  return b;
};

const hRelease: Handler = async (s, r) => {
  const flock = (u32(r, ReleaseIn.release_flags) & FUSE_RELEASE_FLOCK_UNLOCK) !== 0;
  await s.fs.release(r.ctx, r.nodeid, u64(r, ReleaseIn.fh), u32(r, ReleaseIn.flags), u64(r, ReleaseIn.lock_owner), flock);
  return ok(r);
};

const hFsync: Handler = async (s, r) => {
  await s.fs.fsync(r.ctx, r.nodeid, u64(r, FsyncIn.fh), (u32(r, FsyncIn.fsync_flags) & FUSE_FSYNC_FDATASYNC) !== 0);
  return ok(r);
};

/** Name, then `size` value bytes (not NUL-terminated). setxattr_flags (ACL_KILL_SGID) is not passed on. */
const hSetxattr: Handler = async (s, r) => {
  const value = payload(r, u32(r, SetxattrIn.size));
  await s.fs.setxattr(r.ctx, r.nodeid, r.name1!, value, u32(r, SetxattrIn.flags));
  return ok(r);
};

const hGetxattr: Handler = async (s, r) => {
  const size = Math.min(u32(r, GetxattrIn.size), s.conn.maxReply);
  const x = await s.fs.getxattr(r.ctx, r.nodeid, r.name1!, size);
  return x instanceof FsError ? encodeError(r.unique, x.errno) : xattrReply(r, size, x);
};

const hListxattr: Handler = async (s, r) => {
  const size = Math.min(u32(r, GetxattrIn.size), s.conn.maxReply);
  return xattrReply(r, size, await s.fs.listxattr(r.ctx, r.nodeid, size));
};

const hRemovexattr: Handler = async (s, r) => {
  await s.fs.removexattr(r.ctx, r.nodeid, r.name1!);
  return ok(r);
};

const hFlush: Handler = async (s, r) => {
  await s.fs.flush(r.ctx, r.nodeid, u64(r, FlushIn.fh), u64(r, FlushIn.lock_owner));
  return ok(r);
};

const hInit: Handler = (s, r) => s.doInit(r);

const hOpendir: Handler = async (s, r) => openReply(s, r, await s.fs.opendir(r.ctx, r.nodeid, u32(r, OpenIn.flags)));

/** The client's size is a hint: capped so that a hostile size cannot make us allocate gigabytes. */
const hReaddir: Handler = async (s, r) => {
  const size = Math.min(u32(r, ReadIn.size), s.conn.maxReply);
  const list = new DirentList(r.unique, size);
  await s.fs.readdir(r.ctx, r.nodeid, u64(r, ReadIn.fh), u64(r, ReadIn.offset), size, list.add);
  return list.finish();
};

const hReleasedir: Handler = async (s, r) => {
  await s.fs.releasedir(r.ctx, r.nodeid, u64(r, ReleaseIn.fh));
  return ok(r);
};

const hFsyncdir: Handler = async (s, r) => {
  await s.fs.fsyncdir(r.ctx, r.nodeid, u64(r, FsyncIn.fh), (u32(r, FsyncIn.fsync_flags) & FUSE_FSYNC_FDATASYNC) !== 0);
  return ok(r);
};

const hGetlk: Handler = async (s, r) => {
  const lk = await s.fs.getlk(r.ctx, r.nodeid, u64(r, LkIn.fh), u64(r, LkIn.owner), readFileLock(r.buf, IN + LkIn.lk));
  const b = allocReply(r.unique, LkOut.SIZE);
  writeFileLock(b, OutHeader.SIZE + LkOut.lk, lk);
  return b;
};

/** SETLK and SETLKW: SETLKW waits (sleep); FUSE_LK_FLOCK marks a flock(2) lock. */
const hSetlk: Handler = async (s, r) => {
  const isFlock = (u32(r, LkIn.lk_flags) & FUSE_LK_FLOCK) !== 0;
  const lock = readFileLock(r.buf, IN + LkIn.lk);
  await s.fs.setlk(r.ctx, r.nodeid, u64(r, LkIn.fh), u64(r, LkIn.owner), lock, r.opcode === Op.SETLKW, isFlock);
  return ok(r);
};

const hAccess: Handler = async (s, r) => {
  await s.fs.access(r.ctx.groups ? r.ctx : withRequesterGroups(s, r.ctx), r.nodeid, u32(r, AccessIn.mask));
  return ok(r);
};

/**
 * `ctx` whose supplementary groups the transport looks up (a read of /proc/PID/status) only when
 * the filesystem reads them: most ACCESS checks never do (a root requester, a server that is not
 * root and lets the host check).
 */
function withRequesterGroups(s: Session, ctx: Context): Context {
  let groups: readonly number[] | null | undefined;
  return Object.defineProperty({ ...ctx }, 'groups', {
    enumerable: true,
    get: () => (groups === undefined ? (groups = s.requesterGroups(ctx.pid)) : groups) ?? undefined,
  });
}

/** CreateIn.open_flags (FUSE_OPEN_KILL_SUIDGID) is not passed on: the contract has no parameter for it. */
const hCreate: Handler = async (s, r) => {
  const mode = u32(r, CreateIn.mode);
  return createReply(s, r, await s.fs.create(creatorCtx(s, r), r.nodeid, r.name1!, mode, u32(r, CreateIn.flags), u32(r, CreateIn.umask)));
};

const hInterrupt: Handler = async (s, r) => s.doInterrupt(r);

const hDestroy: Handler = (s, r) => s.doDestroy(r);

/** Count checked against the length before anything is forgotten (a lying count is dropped whole). */
const hBatchForget: Handler = async (s, r) => {
  const count = u32(r, BatchForgetIn.count);
  const base = IN + BatchForgetIn.SIZE;
  if (count > Math.floor((r.end - base) / ForgetOne.SIZE)) throw new ProtocolError('BATCH_FORGET count exceeds the request', E.EINVAL);
  const items = new Array<{ nodeid: bigint; nlookup: bigint }>(count);
  for (let i = 0, o = base; i < count; i++, o += ForgetOne.SIZE) {
    items[i] = { nodeid: r64(r.buf, o + ForgetOne.nodeid), nlookup: r64(r.buf, o + ForgetOne.nlookup) };
  }
  s.fs.batchForget(r.ctx, items);
  return null;
};

const hFallocate: Handler = async (s, r) => {
  const fh = u64(r, FallocateIn.fh);
  await s.fs.fallocate(r.ctx, r.nodeid, fh, u32(r, FallocateIn.mode), pos(r, FallocateIn.offset), pos(r, FallocateIn.length));
  return ok(r);
};

const hReaddirplus: Handler = async (s, r) => {
  const size = Math.min(u32(r, ReadIn.size), s.conn.maxReply);
  const list = new DirentList(r.unique, size);
  await s.fs.readdirplus(r.ctx, r.nodeid, u64(r, ReadIn.fh), u64(r, ReadIn.offset), size, list.addPlus);
  return list.finish();
};

const hRename2: Handler = async (s, r) => {
  await s.fs.rename(r.ctx, r.nodeid, r.name1!, u64(r, Rename2In.newdir), r.name2!, u32(r, Rename2In.flags));
  return ok(r);
};

const hLseek: Handler = async (s, r) => {
  const off = await s.fs.lseek(r.ctx, r.nodeid, u64(r, LseekIn.fh), u64(r, LseekIn.offset), u32(r, LseekIn.whence));
  const b = allocReply(r.unique, LseekOut.SIZE);
  w64(b, off, OutHeader.SIZE + LseekOut.offset);
  return b;
};

/** Shared by both opcodes; `max` bounds the length so that the reply's size field can hold it. */
async function copyFileRange(s: Session, r: Request, max: number): Promise<number> {
  const raw = readU64Num(r.buf, IN + CopyFileRangeIn.len); // -1: at least 2^53, i.e. "as much as possible"
  const len = raw < 0 ? max : Math.min(raw, max);
  const n = await s.fs.copyFileRange(r.ctx, r.nodeid, u64(r, CopyFileRangeIn.fh_in), pos(r, CopyFileRangeIn.off_in),
    u64(r, CopyFileRangeIn.nodeid_out), u64(r, CopyFileRangeIn.fh_out), pos(r, CopyFileRangeIn.off_out), len,
    Number(u64(r, CopyFileRangeIn.flags) & 0xffff_ffffn));
  return Math.min(n, len);
}

/** COPY_FILE_RANGE answers a u32 count in WriteOut (the kernel clamps len to UINT_MAX & PAGE_MASK). */
const hCopyFileRange: Handler = async (s, r) => u32Reply(r, await copyFileRange(s, r, 0xffff_f000));

/** COPY_FILE_RANGE_64 (7.45) answers a u64 count. */
const hCopyFileRange64: Handler = async (s, r) => {
  const n = await copyFileRange(s, r, Number.MAX_SAFE_INTEGER);
  const b = allocReply(r.unique, CopyFileRangeOut.SIZE);
  writeU64(b, n, OutHeader.SIZE + CopyFileRangeOut.bytes_copied);
  return b;
};

const hSyncfs: Handler = async (s, r) => {
  await s.fs.syncfs(r.ctx, r.nodeid);
  return ok(r);
};

/** TMPFILE carries a CreateIn and a placeholder name ("/") that is ignored. */
const hTmpfile: Handler = async (s, r) =>
  createReply(s, r, await s.fs.tmpfile(creatorCtx(s, r), r.nodeid, u32(r, CreateIn.mode), u32(r, CreateIn.flags), u32(r, CreateIn.umask)));

const hStatx: Handler = async (s, r) => {
  const fh = u32(r, StatxIn.getattr_flags) & FUSE_GETATTR_FH ? u64(r, StatxIn.fh) : undefined;
  const a = await s.fs.statx(r.ctx, r.nodeid, fh, u32(r, StatxIn.sx_flags), u32(r, StatxIn.sx_mask));
  const b = allocReply(r.unique, StatxOut.SIZE);
  writeStatxOut(b, OutHeader.SIZE, a);
  return b;
};

// ---------------------------------------------------------------------------------------------
// The table

const row = (name: string, inStruct: Struct | null, names: 0 | 1 | 2, handler: Handler | null, noReply = false): OpcodeRow =>
  Object.freeze({ name, in: inStruct, names, noReply, handler });

/** Indexed by opcode; holes are unknown opcodes (ENOSYS). */
export const OPCODES: ReadonlyArray<OpcodeRow | undefined> = (() => {
  const t: Array<OpcodeRow | undefined> = [];
  t[Op.LOOKUP] = row('LOOKUP', null, 1, hLookup);
  t[Op.FORGET] = row('FORGET', ForgetIn, 0, hForget, true);
  t[Op.GETATTR] = row('GETATTR', GetattrIn, 0, hGetattr);
  t[Op.SETATTR] = row('SETATTR', SetattrIn, 0, hSetattr);
  t[Op.READLINK] = row('READLINK', null, 0, hReadlink);
  t[Op.SYMLINK] = row('SYMLINK', null, 2, hSymlink);
  t[Op.MKNOD] = row('MKNOD', MknodIn, 1, hMknod);
  t[Op.MKDIR] = row('MKDIR', MkdirIn, 1, hMkdir);
  t[Op.UNLINK] = row('UNLINK', null, 1, hUnlink);
  t[Op.RMDIR] = row('RMDIR', null, 1, hRmdir);
  t[Op.RENAME] = row('RENAME', RenameIn, 2, hRename);
  t[Op.LINK] = row('LINK', LinkIn, 1, hLink);
  t[Op.OPEN] = row('OPEN', OpenIn, 0, hOpen);
  t[Op.READ] = row('READ', ReadIn, 0, hRead);
  t[Op.WRITE] = row('WRITE', WriteIn, 0, hWrite);
  t[Op.STATFS] = row('STATFS', null, 0, hStatfs);
  t[Op.RELEASE] = row('RELEASE', ReleaseIn, 0, hRelease);
  t[Op.FSYNC] = row('FSYNC', FsyncIn, 0, hFsync);
  t[Op.SETXATTR] = row('SETXATTR', SetxattrIn, 1, hSetxattr);
  t[Op.GETXATTR] = row('GETXATTR', GetxattrIn, 1, hGetxattr);
  t[Op.LISTXATTR] = row('LISTXATTR', GetxattrIn, 0, hListxattr);
  t[Op.REMOVEXATTR] = row('REMOVEXATTR', null, 1, hRemovexattr);
  t[Op.FLUSH] = row('FLUSH', FlushIn, 0, hFlush);
  t[Op.INIT] = row('INIT', InitIn, 0, hInit);
  t[Op.OPENDIR] = row('OPENDIR', OpenIn, 0, hOpendir);
  t[Op.READDIR] = row('READDIR', ReadIn, 0, hReaddir);
  t[Op.RELEASEDIR] = row('RELEASEDIR', ReleaseIn, 0, hReleasedir);
  t[Op.FSYNCDIR] = row('FSYNCDIR', FsyncIn, 0, hFsyncdir);
  t[Op.GETLK] = row('GETLK', LkIn, 0, hGetlk);
  t[Op.SETLK] = row('SETLK', LkIn, 0, hSetlk);
  t[Op.SETLKW] = row('SETLKW', LkIn, 0, hSetlk);
  t[Op.ACCESS] = row('ACCESS', AccessIn, 0, hAccess);
  t[Op.CREATE] = row('CREATE', CreateIn, 1, hCreate);
  t[Op.INTERRUPT] = row('INTERRUPT', InterruptIn, 0, hInterrupt, true);
  t[Op.BMAP] = row('BMAP', BmapIn, 0, null);
  t[Op.DESTROY] = row('DESTROY', null, 0, hDestroy);
  t[Op.IOCTL] = row('IOCTL', IoctlIn, 0, null);
  t[Op.POLL] = row('POLL', PollIn, 0, null);
  // The kernel's answer to a NOTIFY_RETRIEVE we never send; it expects no reply.
  t[Op.NOTIFY_REPLY] = row('NOTIFY_REPLY', null, 0, null, true);
  t[Op.BATCH_FORGET] = row('BATCH_FORGET', BatchForgetIn, 0, hBatchForget, true);
  t[Op.FALLOCATE] = row('FALLOCATE', FallocateIn, 0, hFallocate);
  t[Op.READDIRPLUS] = row('READDIRPLUS', ReadIn, 0, hReaddirplus);
  t[Op.RENAME2] = row('RENAME2', Rename2In, 2, hRename2);
  t[Op.LSEEK] = row('LSEEK', LseekIn, 0, hLseek);
  t[Op.COPY_FILE_RANGE] = row('COPY_FILE_RANGE', CopyFileRangeIn, 0, hCopyFileRange);
  t[Op.SETUPMAPPING] = row('SETUPMAPPING', null, 0, null);
  t[Op.REMOVEMAPPING] = row('REMOVEMAPPING', null, 0, null);
  t[Op.SYNCFS] = row('SYNCFS', SyncfsIn, 0, hSyncfs);
  t[Op.TMPFILE] = row('TMPFILE', CreateIn, 0, hTmpfile);
  t[Op.STATX] = row('STATX', StatxIn, 0, hStatx);
  t[Op.COPY_FILE_RANGE_64] = row('COPY_FILE_RANGE_64', CopyFileRangeIn, 0, hCopyFileRange64);
  return Object.freeze(t);
})();

/** The row of an opcode, or undefined for an unknown one. */
export function opcodeRow(opcode: number): OpcodeRow | undefined {
  return opcode < OPCODES.length ? OPCODES[opcode] : undefined;
}

/** The opcodes every server answers ENOSYS without looking at anything (a row without a handler that expects a reply: IOCTL, BMAP, POLL, ...). */
export function enosysOpcodes(): number[] {
  const out: number[] = [];
  OPCODES.forEach((row, op) => {
    if (row !== undefined && row.handler === null && !row.noReply) out.push(op);
  });
  return out;
}

/** Opcode name for logs ('OPCODE_4096' when unknown). */
export function opcodeName(opcode: number): string {
  return opcodeRow(opcode)?.name ?? `OPCODE_${opcode}`;
}
