/**
 * Domain types of the inode-based FileSystem interface (src/fs/filesystem.ts). These are not wire
 * structs: the raw FUSE codec (src/fuse/) and the fuse-native adapter translate them.
 * Node ids and 64-bit counters are bigint; names and link targets are Buffers (bytes, maybe not UTF-8).
 */
import type { DeviceNumber, Timespec } from '../sys/stat.js';
export type { DeviceNumber, Timespec };

/** A byte offset or length: a number below 2^53, a bigint beyond (where only the host can judge it). */
export type FileOffset = number | bigint;

/** Who is asking. uid/gid/pid come from the request header (fuse_in_header). */
export interface Context {
  uid: number;
  gid: number;
  pid: number;
  /**
   * Supplementary groups the client sent with the request (FUSE_EXT_GROUPS, on creates when
   * FUSE_CREATE_SUPP_GROUP is negotiated: the parent directory's group when the requester has it
   * only as a supplementary group); absent otherwise.
   */
  groups?: readonly number[];
  /** request id, for logs only */
  unique: bigint;
  /** the security label of the node a create/mkdir/mknod/symlink/tmpfile makes (--security-label) */
  secctx?: SecurityLabel;
}

/** An xattr the client's kernel wants on a new node (FUSE_SECURITY_CTX): views into the request. */
export interface SecurityLabel {
  name: Buffer;
  value: Buffer;
}

/** Attributes of an inode, lossless (nanosecond times, 64-bit inode numbers and sizes). */
export interface Attr {
  /** the host inode number (st_ino), not the node id */
  ino: bigint;
  size: bigint;
  blocks: bigint;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** birth time when the host filesystem reports one */
  btime: Timespec | null;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  blksize: number;
  /** statx attributes (STATX_ATTR_*), 0 when unknown */
  attributes: bigint;
}

export interface AttrReply {
  attr: Attr;
  attrTimeoutMs: number;
}

/**
 * The answer to lookup/mknod/mkdir/symlink/link/create. Every Entry returned with nodeid != 0
 * counts one lookup on that node (the client will send FORGET for it). nodeid 0 with
 * entryTimeoutMs > 0 is a negative entry (not counted).
 */
export interface Entry {
  nodeid: bigint;
  generation: bigint;
  attr: Attr;
  entryTimeoutMs: number;
  attrTimeoutMs: number;
  /** a directory on another mount than its parent, announced to the client (FUSE_ATTR_SUBMOUNT) */
  submount?: boolean;
}

/** FOPEN_* bits, kernel names (fuse_kernel.h). */
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_NONSEEKABLE = 1 << 2;
export const FOPEN_CACHE_DIR = 1 << 3;
export const FOPEN_STREAM = 1 << 4;
export const FOPEN_NOFLUSH = 1 << 5;
export const FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6;
export const FOPEN_PASSTHROUGH = 1 << 7;

export interface OpenOut {
  fh: bigint;
  /** FOPEN_* */
  openFlags: number;
  /** backing id for FOPEN_PASSTHROUGH */
  backingId?: number;
}

export interface CreateOut {
  entry: Entry;
  open: OpenOut;
}

/** Which fields of SetattrIn are set: the FATTR_* bits of fuse_kernel.h. */
export const FATTR_MODE = 1 << 0;
export const FATTR_UID = 1 << 1;
export const FATTR_GID = 1 << 2;
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_FH = 1 << 6;
export const FATTR_ATIME_NOW = 1 << 7;
export const FATTR_MTIME_NOW = 1 << 8;
export const FATTR_LOCKOWNER = 1 << 9;
export const FATTR_CTIME = 1 << 10;
export const FATTR_KILL_SUIDGID = 1 << 11;

export interface SetattrIn {
  /** FATTR_* mask */
  valid: number;
  fh: bigint;
  size: bigint;
  mode: number;
  uid: number;
  gid: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

/** One readdir record. `off` is the cookie that resumes the listing after this entry. */
export interface DirEntry {
  ino: bigint;
  off: bigint;
  /** DT_* */
  type: number;
  name: Buffer;
}

export interface StatfsOut {
  blocks: bigint;
  bfree: bigint;
  bavail: bigint;
  files: bigint;
  ffree: bigint;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** getxattr/listxattr: a size probe (size argument 0) or the value. */
export type XattrReply = { size: number } | { value: Buffer };

/** fuse_file_lock: a POSIX byte-range lock, `end` inclusive (OFFSET_MAX for "to EOF"). */
export interface FileLock {
  start: bigint;
  end: bigint;
  /** F_RDLCK, F_WRLCK, F_UNLCK */
  type: number;
  pid: number;
}

/** What INIT negotiated that changes the filesystem's behaviour. */
export interface InitOptions {
  /** FUSE_WRITEBACK_CACHE: the kernel may read from files opened write-only and handles O_APPEND */
  writeback: boolean;
  /** FUSE_HANDLE_KILLPRIV_V2: the server clears suid/sgid on write/truncate/chown */
  killPrivV2: boolean;
  /** FUSE_PASSTHROUGH negotiated: open may return backing ids (frontend calls registerBacking) */
  passthrough: boolean;
  /** FUSE_SUBMOUNTS negotiated: the client makes a submount of each entry marked `submount` */
  submounts?: boolean;
}

export const WRITE_CACHE = 1 << 0;
export const WRITE_LOCKOWNER = 1 << 1;
export const WRITE_KILL_SUIDGID = 1 << 2;
