/**
 * Shape of the N-API addon native/ (handlefs_sys.node). One function per syscall, no policy.
 *
 * Conventions (all functions):
 * - fds, flags, modes, uids are JS numbers (int32/uint32 as the syscall takes them).
 * - Names and paths are Buffers. They need NOT be NUL-terminated: the addon copies them into a
 *   NUL-terminated C string; a Buffer containing a NUL byte gives EINVAL (thrown as an errno error,
 *   syscall name = the function's). An empty Buffer is passed as "" (for AT_EMPTY_PATH).
 * - On failure (-1) the addon throws an Error with `.code` ('ENOENT', from strerrorname_np),
 *   a positive `.errno` and `.syscall` ('openat'); message `"<code>: <syscall>"`.
 * - A wrong argument type throws TypeError "Expected <nth> argument to be <type>"; a number that is
 *   not an integer in the expected range (int32, uint32, safe integer) throws RangeError. A name
 *   longer than PATH_MAX throws ENAMETOOLONG without reaching the kernel.
 * - `.syscall` is the C name: 'name_to_handle_at', 'copy_file_range', 'fcntl' for the OFD lock
 *   calls and fcntlInt, 'ioctl' for the FUSE ioctls, 'getrlimit', 'capget'.
 * - 64-bit values that may exceed 2^53 (inode numbers, dir cookies, stat sizes) are bigint or go
 *   through a BigUint64Array; file offsets/lengths for I/O are numbers (exact below 2^53).
 * - `...Async` functions return a Promise, run on the libuv pool (napi_async_work) and reject with
 *   the same error shape. Blocking lock waits (ofdSetlkw, flockWait) run on a dedicated thread of
 *   their own so that they can never starve the libuv pool. A pending wait does NOT keep the event
 *   loop alive (its threadsafe function is unref'd, so a wait that never ends cannot block exit):
 *   a script that awaits only a lock wait exits with code 13 (unsettled top-level await). A server
 *   always has its transport handle open, so this matters only in small scripts and tests.
 * - Argument errors (types, buffer ranges) are thrown synchronously, even by the async functions;
 *   syscall errors of the async functions reject the Promise.
 */

/** Field layouts of the BigUint64Arrays filled by statx/fstatfs: see src/sys/stat.ts (ST, STATFS). */

export interface FileHandleRaw {
  /** handle_type from struct file_handle */
  type: number;
  /** f_handle bytes (handle_bytes long) */
  bytes: Buffer;
  /** mount id returned by the kernel (unique 64-bit id when AT_HANDLE_MNT_ID_UNIQUE was passed) */
  mountId: bigint;
}

export interface FlockRaw {
  /** F_RDLCK / F_WRLCK / F_UNLCK */
  type: number;
  whence: number;
  start: number;
  len: number;
  pid: number;
}

/** One message read by recvMsg. */
export interface RecvMsgResult {
  /** bytes read into the buffer; 0 at EOF */
  n: number;
  /** the fds that came with it (close-on-exec), at most maxFds; the caller owns them */
  fds: number[];
  /** fds were dropped (more than maxFds, or MSG_CTRUNC); the dropped ones are already closed */
  truncated: boolean;
}

/** A stretch of guest memory for the mapped I/O: [a mapping from mapShared, byte offset in it, length]. */
export type MappedSeg = [mapping: ArrayBuffer, offset: number, length: number];
/** A ring of native/src/uring.c (an external). */
export type RingHandle = { readonly __ring: unique symbol };

export interface NativeAddon {
  // --- open / close / fcntl
  openat(dirfd: number, name: Buffer, flags: number, mode: number): number;
  /** openat returning -errno instead of throwing (the *Try forms build no Error: hot-path failures). */
  openatTry(dirfd: number, name: Buffer, flags: number, mode: number): number;
  /** openat2 with struct open_how { flags, mode, resolve }. */
  openat2(dirfd: number, name: Buffer, flags: number, mode: number, resolve: number): number;
  close(fd: number): void;
  /** fcntl with an int argument (F_DUPFD_CLOEXEC, F_GETFL, F_SETFL, F_GETFD, F_SETFD); returns the result. */
  fcntlInt(fd: number, cmd: number, arg: number): number;

  // --- handles
  /**
   * name_to_handle_at; flags may include AT_EMPTY_PATH, AT_SYMLINK_FOLLOW, AT_HANDLE_FID,
   * AT_HANDLE_MNT_ID_UNIQUE. Made in JS (src/sys/syscalls.ts) over nameToHandleInto.
   */
  nameToHandleAt(dirfd: number, name: Buffer, flags: number): FileHandleRaw;
  /** nameToHandleAt returning -errno instead of throwing */
  nameToHandleAtTry(dirfd: number, name: Buffer, flags: number): FileHandleRaw | number;
  /**
   * The addon's name_to_handle_at: 0 or -errno; on success `out` (at least 16 + MAX_HANDLE_SZ
   * bytes) holds, little-endian, handle_type (i32), handle_bytes (u32), the mount id (u64) and the
   * handle's bytes from offset 16.
   */
  nameToHandleInto(dirfd: number, name: Buffer, flags: number, out: Buffer): number;
  /** Throws the addon's error for a positive errno (code, errno, syscall), as a failing binding does. */
  throwErrno(errno: number, syscall: string): never;
  /**
   * open_by_handle_at. mountFd must be a real fd (not O_PATH: the kernel answers EBADF) on the
   * handle's filesystem. Needs CAP_DAC_READ_SEARCH (EPERM without). Stale handles give ESTALE.
   */
  openByHandleAt(mountFd: number, type: number, bytes: Buffer, flags: number): number;

  // --- stat
  /** statx(dirfd, name, flags, mask) into out (BigUint64Array of STAT_LEN). */
  statx(dirfd: number, name: Buffer, flags: number, mask: number, out: BigUint64Array): void;
  /** fstatfs(fd) into out (BigUint64Array of STATFS_LEN). */
  fstatfs(fd: number, out: BigUint64Array): void;

  // --- namespace
  mkdirat(dirfd: number, name: Buffer, mode: number): void;
  /** dev is the kernel dev_t (use makedev(major, minor)); bigint to be lossless. */
  mknodat(dirfd: number, name: Buffer, mode: number, dev: bigint): void;
  /** glibc makedev(major, minor) */
  makedev(major: number, minor: number): bigint;
  symlinkat(target: Buffer, dirfd: number, name: Buffer): void;
  /** readlinkat; an empty name on an O_PATH fd of a symlink reads that symlink. */
  readlinkat(dirfd: number, name: Buffer): Buffer;
  unlinkat(dirfd: number, name: Buffer, flags: number): void;
  renameat2(olddirfd: number, oldname: Buffer, newdirfd: number, newname: Buffer, flags: number): void;
  linkat(olddirfd: number, oldname: Buffer, newdirfd: number, newname: Buffer, flags: number): void;
  /** uid/gid -1 leaves that id unchanged. */
  fchownat(dirfd: number, name: Buffer, uid: number, gid: number, flags: number): void;
  /** raw fchmodat2 syscall (452): accepts AT_EMPTY_PATH and AT_SYMLINK_NOFOLLOW. */
  fchmodat2(dirfd: number, name: Buffer, mode: number, flags: number): void;
  /** utimensat; nsec may be UTIME_NOW or UTIME_OMIT. Seconds: a number, or a bigint for the full 64 bits (the filesystem clamps). */
  utimensat(dirfd: number, name: Buffer, atimeSec: number | bigint, atimeNsec: number, mtimeSec: number | bigint, mtimeNsec: number, flags: number): void;
  faccessat2(dirfd: number, name: Buffer, mode: number, flags: number): void;

  // --- data
  /** The length may be a bigint: the host filesystem decides what it can hold (EFBIG, EINVAL). */
  ftruncate(fd: number, length: number | bigint): void;
  /** lseek with bigint offsets (directory cookies are 64-bit hashes); whence may be SEEK_DATA/SEEK_HOLE. */
  lseek(fd: number, offset: bigint, whence: number): bigint;
  syncfs(fd: number): void;
  /**
   * pread(fd, buf + offset, length, position) -> bytes read. [offset, offset + length) must lie
   * within buf (RangeError otherwise). position -1 means read(2)/write(2) at the file offset.
   */
  pread(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
  pwrite(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
  /** position -1 means read(2)/write(2) (O_APPEND files, current offset). buf is kept alive until settled. */
  preadAsync(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  pwriteAsync(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** fsync, or fdatasync when datasync is true (errors name the one called). */
  fsyncAsync(fd: number, datasync: boolean): Promise<void>;
  /** An offset of -1 uses (and advances) that fd's file offset (NULL to the syscall). */
  /** Offsets and lengths: numbers, or bigints beyond 2^53 (the host answers EFBIG, EINVAL, ...). */
  copyFileRangeAsync(fdIn: number, offIn: number | bigint, fdOut: number, offOut: number | bigint, len: number | bigint, flags: number): Promise<number>;
  fallocateAsync(fd: number, mode: number, offset: number | bigint, length: number | bigint): Promise<void>;
  /**
   * preadv2/pwritev2 with RWF_NOWAIT: only what needs no blocking (page cache); may be short.
   * Returns the count, or -EAGAIN (would block) / -EOPNOTSUPP / -EINVAL (not supported here)
   * without building an Error; other failures throw.
   */
  preadNowait(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
  pwriteNowait(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
  /**
   * read(2) on a non-blocking fd into buf[offset, offset+length) (position ignored): the count, or
   * -EAGAIN, -EINTR, -ENOENT; other failures throw.
   */
  readNonblock(fd: number, buf: Buffer, offset: number, length: number, position: number): number;

  // --- directories
  /** getdents64(fd, buf) -> bytes filled (0 at end); records parsed in TS (src/sys/dirent.ts). */
  getdents64(fd: number, buf: Buffer): number;

  // --- xattrs
  // The path forms follow a final symlink. For an O_PATH fd use them on /proc/self/fd/N: the magic
  // link resolves to the fd's own file (the symlink itself for an O_PATH|O_NOFOLLOW fd of a
  // symlink). l*xattr on /proc/self/fd/N would act on the /proc link instead (EPERM / ENODATA), and
  // f*xattr refuse O_PATH fds (EBADF). A null value or list asks for the size; ERANGE when too small.
  /** getxattr returning the size / bytes copied, or -errno instead of throwing (ENODATA is the common answer). */
  getxattrTry(path: Buffer, name: Buffer, value: Buffer | null): number;
  setxattr(path: Buffer, name: Buffer, value: Buffer, flags: number): void;
  listxattr(path: Buffer, list: Buffer | null): number;
  removexattr(path: Buffer, name: Buffer): void;
  /**
   * Test-only, with lsetxattr: test/sys/xattr.test.ts and test/fs/ops.test.ts check a symlink's own
   * xattrs through them, independently of the /proc/self/fd route src takes.
   */
  lgetxattr(path: Buffer, name: Buffer, value: Buffer | null): number;
  lsetxattr(path: Buffer, name: Buffer, value: Buffer, flags: number): void;
  /** fgetxattr on an fd open for I/O, returning -errno instead of throwing. */
  fgetxattrTry(fd: number, name: Buffer, value: Buffer | null): number;

  // --- locks
  /** F_OFD_GETLK; returns the conflicting lock (pid -1 for an OFD lock) or { type: F_UNLCK, ... }. Errors: syscall 'fcntl'. */
  ofdGetlk(fd: number, type: number, whence: number, start: number, len: number): FlockRaw;
  /** F_OFD_SETLK (non-blocking): EAGAIN on conflict. */
  ofdSetlk(fd: number, type: number, whence: number, start: number, len: number): void;
  /** F_OFD_SETLKW on a dedicated thread: resolves when the lock is taken (errors reject, syscall 'fcntl'). */
  ofdSetlkw(fd: number, type: number, whence: number, start: number, len: number): Promise<void>;
  /** flock(fd, op) synchronous; use with LOCK_NB. */
  flock(fd: number, op: number): void;
  /** flock(fd, op) without LOCK_NB, on a dedicated thread. */
  flockWait(fd: number, op: number): Promise<void>;

  // --- process
  /** RLIMIT_NOFILE as [soft, hard] (RLIM_INFINITY as -1). */
  getrlimitNofile(): [number, number];
  /** setrlimit(RLIMIT_NOFILE) to n for both the soft and the hard limit (raising the hard one needs CAP_SYS_RESOURCE) */
  setrlimitNofile(n: number): void;
  /** whether capability number `cap` (e.g. 2 = CAP_DAC_READ_SEARCH, 21 = CAP_SYS_ADMIN) is in the effective set */
  capEffective(cap: number): boolean;
  /** fchdir(rootFd) + chroot("."): the directory rootFd becomes this process's root and cwd */
  chrootInto(rootFd: number): void;
  fchdir(fd: number): void;
  /** remove a capability from the effective, permitted and inheritable sets */
  dropCapability(cap: number): void;

  // --- event loop and file system events
  /** watch fd for readability on the event loop (uv_poll); callback(status) runs on the main thread */
  pollStart(fd: number, callback: (status: number) => void): unknown;
  /** stop a watch started by pollStart */
  pollStop(handle: unknown): void;
  /**
   * This thread's event loop does not sleep for the next `ms` milliseconds (0..1000; a later call
   * extends the window): each turn polls with a zero timeout (a uv_idle handle), so what another
   * thread posts or an fd brings is taken on the next turn, without a wake-up. Runs no JS.
   */
  loopHot(ms: number): void;
  /** fanotify_init(2) -> fd */
  fanotifyInit(flags: number, eventFlags: number): number;
  /** fanotify_mark(2); the mask is 64 bits */
  fanotifyMark(fd: number, flags: number, mask: bigint, dirfd: number, path: Buffer): void;

  // --- mount and /dev/fuse
  mount(source: Buffer, target: Buffer, fstype: Buffer, flags: number, data: Buffer): void;
  umount2(target: Buffer, flags: number): void;
  /** FUSE_DEV_IOC_BACKING_OPEN: returns the backing id. */
  fuseBackingOpen(devFd: number, fd: number, flags: number): number;
  /** FUSE_DEV_IOC_BACKING_CLOSE */
  fuseBackingClose(devFd: number, backingId: number): void;
  /** open /dev/fuse and FUSE_DEV_IOC_CLONE it onto the connection of devFd: another channel of it (O_CLOEXEC) */
  fuseDevClone(devFd: number): number;
  /** sched_setaffinity of the calling thread to one CPU; -1: every CPU again */
  pinThread(cpu: number): void;
  // --- FUSE over io_uring (native/src/uring.c); every call on a ring from the thread that created it
  /** make and drop a small io_uring: throws why this process cannot */
  uringProbe(): void;
  /** an io_uring whose commands go to devFd's FUSE connection */
  uringCreate(devFd: number): RingHandle;
  /** perQueue new entries (process-wide ids) for each FUSE queue in qids, REGISTERed through this ring; the count made */
  uringRegister(ring: RingHandle, qids: number[], perQueue: number, payloadSize: number): number;
  /** the ring's fd, readable when a completion waits */
  uringFd(ring: RingHandle): number;
  /** one completion: > 0 a request copied into buf ((qid * 16384 + entry) * 2^22 + length), 0 none, < 0 -(entry * 4096 + errno) */
  uringNext(ring: RingHandle, buf: Buffer): number;
  /** the entry's reply (/dev/fuse layout) committed through this ring, which then gets the entry's next request */
  uringCommit(ring: RingHandle, entry: number, reply: Buffer): void;
  /** a Buffer over the entry's payload and the 16 bytes before it: a reply built there is committed without a copy */
  uringReplySpace(entry: number): Buffer;
  /** unmap and close, once the connection ended */
  uringClose(ring: RingHandle): void;
  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC) -> [a, b] (for fusermount3's _FUSE_COMMFD) */
  socketpairUnix(): [number, number];
  /** recvmsg one fd sent with SCM_RIGHTS (blocks; close-on-exec); ECONNRESET when the peer closed without sending */
  recvFd(sock: number): number;

  // --- vhost-user: socket, eventfds, guest memory
  // Paths and memfd names here are strings or Buffers (an operator's path, a label). -EAGAIN is -11.
  /** socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC) + bind + listen; unlinks nothing (EADDRINUSE); a path longer than sun_path gives ENAMETOOLONG. */
  unixListen(path: string | Buffer, backlog: number): number;
  /** socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC) connected to path, blocking like socketpairUnix's; ENOENT/ECONNREFUSED as connect(2) gives them, EAGAIN when the listener's backlog is full (never waits). */
  unixConnect(path: string | Buffer): number;
  /** accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) -> the connection's fd, or -EAGAIN when none is pending. */
  acceptNonblock(listenFd: number): number;
  /** One non-blocking recvmsg into buf[offset, offset+length) with SCM_RIGHTS (maxFds <= 32, extra fds closed); null on EAGAIN. */
  recvMsg(fd: number, buf: Buffer, offset: number, length: number, maxFds: number): RecvMsgResult | null;
  /** One non-blocking sendmsg (MSG_NOSIGNAL) of buf[offset, offset+length) with up to 32 fds as SCM_RIGHTS: the count, or -EAGAIN. */
  sendMsg(fd: number, buf: Buffer, offset: number, length: number, fds?: number[]): number;
  /** eventfd(0, flags) -> fd (EFD_NONBLOCK | EFD_CLOEXEC for a non-blocking read). */
  eventfdCreate(flags: number): number;
  /** Read (and reset) the counter; null when it is 0 on a non-blocking eventfd. */
  eventfdRead(fd: number): bigint | null;
  /** Add value (default 1) to the counter; EAGAIN (it would overflow) returns silently. */
  eventfdWrite(fd: number, value?: bigint | number): void;
  /** mmap(PROT_READ|PROT_WRITE, MAP_SHARED) of [offset, offset+size) as an external ArrayBuffer; EINVAL when size is 0 or above MAP_SHARED_MAX. */
  mapShared(fd: number, size: number | bigint, offset: number | bigint): ArrayBuffer;
  /** Detach a mapShared ArrayBuffer (every view becomes empty) and munmap once no I/O uses it; idempotent; EINVAL for any other ArrayBuffer. */
  unmapShared(mapping: ArrayBuffer): void;
  /**
   * preadv2 from fd into guest memory at position (-1: the file offset), on the libuv pool; may be
   * short. Segments are checked before anything is queued: one outside its mapping, of a detached
   * or foreign ArrayBuffer, or more than IOV_MAX of them reject with EINVAL ('preadv'), no I/O done.
   */
  preadvMappedAsync(fd: number, segs: MappedSeg[], position: number | bigint): Promise<number>;
  /** pwritev2 from guest memory to fd, as preadvMappedAsync (errors name 'pwritev'). */
  pwritevMappedAsync(fd: number, segs: MappedSeg[], position: number | bigint): Promise<number>;
  /** memfd_create(name, MFD_CLOEXEC) grown to size with ftruncate: guest memory for tests and a fake VMM. */
  memfdCreate(name: string | Buffer, size: number | bigint): number;
}
