/**
 * Bit constants of the FUSE protocol, kernel names (include/uapi/linux/fuse.h), and the INIT
 * capability names for debug output. INIT capability bits are bigint: bits 32..63 travel in
 * init_in/init_out.flags2 (only when FUSE_INIT_EXT is set on both sides).
 *
 * FOPEN_*, FATTR_* and WRITE_* are the domain constants of src/fs/types.ts (same values as the
 * kernel's), re-exported here so that fuse/ code has one place to import bits from.
 */
export {
  FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FOPEN_NONSEEKABLE, FOPEN_CACHE_DIR, FOPEN_STREAM, FOPEN_NOFLUSH,
  FOPEN_PARALLEL_DIRECT_WRITES, FOPEN_PASSTHROUGH,
  FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE, FATTR_ATIME, FATTR_MTIME, FATTR_FH, FATTR_ATIME_NOW,
  FATTR_MTIME_NOW, FATTR_LOCKOWNER, FATTR_CTIME, FATTR_KILL_SUIDGID,
  WRITE_CACHE as FUSE_WRITE_CACHE, WRITE_LOCKOWNER as FUSE_WRITE_LOCKOWNER,
  WRITE_KILL_SUIDGID as FUSE_WRITE_KILL_SUIDGID,
} from '../fs/types.js';

// INIT request/reply capability bits -------------------------------------------------------------

/** Asynchronous (parallel) read requests. */
export const FUSE_ASYNC_READ = 1n << 0n;
/** Remote POSIX locks: the kernel sends GETLK/SETLK/SETLKW. */
export const FUSE_POSIX_LOCKS = 1n << 1n;
export const FUSE_FILE_OPS = 1n << 2n;
/** The filesystem handles O_TRUNC in OPEN (no separate SETATTR size=0). */
export const FUSE_ATOMIC_O_TRUNC = 1n << 3n;
/** The filesystem handles lookups of "." and "..": NFS export / name_to_handle_at on the mount. */
export const FUSE_EXPORT_SUPPORT = 1n << 4n;
/** Writes larger than 4 KiB. */
export const FUSE_BIG_WRITES = 1n << 5n;
/** Do not apply the umask to the mode on create: the filesystem gets mode and umask. */
export const FUSE_DONT_MASK = 1n << 6n;
export const FUSE_SPLICE_WRITE = 1n << 7n;
export const FUSE_SPLICE_MOVE = 1n << 8n;
export const FUSE_SPLICE_READ = 1n << 9n;
/** Remote BSD flock(2) locks (SETLK with FUSE_LK_FLOCK). */
export const FUSE_FLOCK_LOCKS = 1n << 10n;
export const FUSE_HAS_IOCTL_DIR = 1n << 11n;
/** Invalidate cached pages when mtime/size change. */
export const FUSE_AUTO_INVAL_DATA = 1n << 12n;
export const FUSE_DO_READDIRPLUS = 1n << 13n;
/** Adaptive readdirplus: the kernel chooses READDIR or READDIRPLUS. */
export const FUSE_READDIRPLUS_AUTO = 1n << 14n;
export const FUSE_ASYNC_DIO = 1n << 15n;
/** Writeback cache: the kernel buffers writes and may read from write-only opens. */
export const FUSE_WRITEBACK_CACHE = 1n << 16n;
export const FUSE_NO_OPEN_SUPPORT = 1n << 17n;
/** Allow parallel lookups and readdir in one directory. */
export const FUSE_PARALLEL_DIROPS = 1n << 18n;
export const FUSE_HANDLE_KILLPRIV = 1n << 19n;
export const FUSE_POSIX_ACL = 1n << 20n;
export const FUSE_ABORT_ERROR = 1n << 21n;
/** init_out.max_pages is valid. */
export const FUSE_MAX_PAGES = 1n << 22n;
/** Cache READLINK replies. */
export const FUSE_CACHE_SYMLINKS = 1n << 23n;
export const FUSE_NO_OPENDIR_SUPPORT = 1n << 24n;
export const FUSE_EXPLICIT_INVAL_DATA = 1n << 25n;
export const FUSE_MAP_ALIGNMENT = 1n << 26n;
export const FUSE_SUBMOUNTS = 1n << 27n;
/** The filesystem clears suid/sgid on write, truncate and chown (FATTR_KILL_SUIDGID, WRITE_KILL_SUIDGID). */
export const FUSE_HANDLE_KILLPRIV_V2 = 1n << 28n;
/** SETXATTR carries the 16-byte SetxattrIn. */
export const FUSE_SETXATTR_EXT = 1n << 29n;
/** flags2 is valid (bits 32..63). */
export const FUSE_INIT_EXT = 1n << 30n;
export const FUSE_INIT_RESERVED = 1n << 31n;
export const FUSE_SECURITY_CTX = 1n << 32n;
export const FUSE_HAS_INODE_DAX = 1n << 33n;
export const FUSE_CREATE_SUPP_GROUP = 1n << 34n;
export const FUSE_HAS_EXPIRE_ONLY = 1n << 35n;
export const FUSE_DIRECT_IO_ALLOW_MMAP = 1n << 36n;
/** Backing files: OPEN may answer FOPEN_PASSTHROUGH + backing_id (needs CAP_SYS_ADMIN). */
export const FUSE_PASSTHROUGH = 1n << 37n;
/** Explicitly refuse export (name_to_handle_at on the mount fails with EOPNOTSUPP). */
export const FUSE_NO_EXPORT_SUPPORT = 1n << 38n;
export const FUSE_HAS_RESEND = 1n << 39n;
export const FUSE_ALLOW_IDMAP = 1n << 40n;
export const FUSE_OVER_IO_URING = 1n << 41n;
export const FUSE_REQUEST_TIMEOUT = 1n << 42n;

const INIT_FLAG_NAMES: ReadonlyArray<readonly [bigint, string]> = [
  [FUSE_ASYNC_READ, 'ASYNC_READ'], [FUSE_POSIX_LOCKS, 'POSIX_LOCKS'], [FUSE_FILE_OPS, 'FILE_OPS'],
  [FUSE_ATOMIC_O_TRUNC, 'ATOMIC_O_TRUNC'], [FUSE_EXPORT_SUPPORT, 'EXPORT_SUPPORT'],
  [FUSE_BIG_WRITES, 'BIG_WRITES'], [FUSE_DONT_MASK, 'DONT_MASK'], [FUSE_SPLICE_WRITE, 'SPLICE_WRITE'],
  [FUSE_SPLICE_MOVE, 'SPLICE_MOVE'], [FUSE_SPLICE_READ, 'SPLICE_READ'], [FUSE_FLOCK_LOCKS, 'FLOCK_LOCKS'],
  [FUSE_HAS_IOCTL_DIR, 'HAS_IOCTL_DIR'], [FUSE_AUTO_INVAL_DATA, 'AUTO_INVAL_DATA'],
  [FUSE_DO_READDIRPLUS, 'DO_READDIRPLUS'], [FUSE_READDIRPLUS_AUTO, 'READDIRPLUS_AUTO'],
  [FUSE_ASYNC_DIO, 'ASYNC_DIO'], [FUSE_WRITEBACK_CACHE, 'WRITEBACK_CACHE'],
  [FUSE_NO_OPEN_SUPPORT, 'NO_OPEN_SUPPORT'], [FUSE_PARALLEL_DIROPS, 'PARALLEL_DIROPS'],
  [FUSE_HANDLE_KILLPRIV, 'HANDLE_KILLPRIV'], [FUSE_POSIX_ACL, 'POSIX_ACL'], [FUSE_ABORT_ERROR, 'ABORT_ERROR'],
  [FUSE_MAX_PAGES, 'MAX_PAGES'], [FUSE_CACHE_SYMLINKS, 'CACHE_SYMLINKS'],
  [FUSE_NO_OPENDIR_SUPPORT, 'NO_OPENDIR_SUPPORT'], [FUSE_EXPLICIT_INVAL_DATA, 'EXPLICIT_INVAL_DATA'],
  [FUSE_MAP_ALIGNMENT, 'MAP_ALIGNMENT'], [FUSE_SUBMOUNTS, 'SUBMOUNTS'],
  [FUSE_HANDLE_KILLPRIV_V2, 'HANDLE_KILLPRIV_V2'], [FUSE_SETXATTR_EXT, 'SETXATTR_EXT'],
  [FUSE_INIT_EXT, 'INIT_EXT'], [FUSE_INIT_RESERVED, 'INIT_RESERVED'], [FUSE_SECURITY_CTX, 'SECURITY_CTX'],
  [FUSE_HAS_INODE_DAX, 'HAS_INODE_DAX'], [FUSE_CREATE_SUPP_GROUP, 'CREATE_SUPP_GROUP'],
  [FUSE_HAS_EXPIRE_ONLY, 'HAS_EXPIRE_ONLY'], [FUSE_DIRECT_IO_ALLOW_MMAP, 'DIRECT_IO_ALLOW_MMAP'],
  [FUSE_PASSTHROUGH, 'PASSTHROUGH'], [FUSE_NO_EXPORT_SUPPORT, 'NO_EXPORT_SUPPORT'],
  [FUSE_HAS_RESEND, 'HAS_RESEND'], [FUSE_ALLOW_IDMAP, 'ALLOW_IDMAP'], [FUSE_OVER_IO_URING, 'OVER_IO_URING'],
  [FUSE_REQUEST_TIMEOUT, 'REQUEST_TIMEOUT'],
];

// Per-request flags ------------------------------------------------------------------------------

/** ReleaseIn.release_flags */
export const FUSE_RELEASE_FLUSH = 1 << 0;
export const FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1;
/** GetattrIn.getattr_flags (and StatxIn.getattr_flags): `fh` is valid. */
export const FUSE_GETATTR_FH = 1 << 0;
/** LkIn.lk_flags: a flock(2) lock rather than a POSIX one. */
export const FUSE_LK_FLOCK = 1 << 0;
/** ReadIn.read_flags: lock_owner is valid. */
export const FUSE_READ_LOCKOWNER = 1 << 1;
/** FsyncIn.fsync_flags: data only (fdatasync). */
export const FUSE_FSYNC_FDATASYNC = 1 << 0;
/** OpenIn/CreateIn.open_flags: clear suid/sgid (O_TRUNC open by a non-owner, HANDLE_KILLPRIV_V2). */
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;
/** SetxattrIn.setxattr_flags: clear sgid when setting a POSIX ACL. */
export const FUSE_SETXATTR_ACL_KILL_SGID = 1 << 0;
/** Attr.flags */
export const FUSE_ATTR_SUBMOUNT = 1 << 0;
export const FUSE_ATTR_DAX = 1 << 1;

/** "ASYNC_READ|POSIX_LOCKS|0x1000000000" */
export function initFlagNames(f: bigint): string {
  const out: string[] = [];
  let rest = f;
  for (const [bit, name] of INIT_FLAG_NAMES) {
    if (f & bit) {
      out.push(name);
      rest &= ~bit;
    }
  }
  if (rest) out.push(`0x${rest.toString(16)}`);
  return out.length ? out.join('|') : '0';
}
