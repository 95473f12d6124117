/**
 * The syscalls a sandboxed worker may make (--seccomp kill|log); any other kills it or is logged.
 * The first list is measured: scripts/seccomp-measure runs the mounted tests (the POSIX table,
 * smoke, restart, persist) with the worker traced by strace and prints every syscall the worker
 * and its threads made from their exec of Node on (Linux 6.18, Node 20.20, x86_64). The second is
 * what the server's handlers (native/src) or Node and libuv make on paths those tests do not take;
 * each line says which. Names are libseccomp's; a name without a number on an architecture is
 * skipped there (e.g. `open` on arm64). Re-measure after a Node upgrade: a new syscall in Node
 * kills a worker under `kill` (the supervisor answers its requests EIO and restarts it; more than
 * five crashes a minute unmount), and `log` shows it in the kernel log first.
 */
const MEASURED = [
  'access', 'arch_prctl', 'brk', 'capget', 'clone3', 'close', 'epoll_create1', 'epoll_ctl', 'epoll_pwait',
  'eventfd2', 'execve', 'exit_group', 'faccessat2', 'fanotify_init', 'fanotify_mark', 'fchmodat2', 'fchownat',
  'fcntl', 'fgetxattr', 'flock', 'fstat', 'fstatfs', 'ftruncate', 'futex', 'getcwd', 'getdents64', 'getegid',
  'geteuid', 'getgid', 'getpid', 'getrandom', 'getsockname', 'getsockopt', 'gettid', 'getuid', 'getxattr',
  'ioctl', 'linkat', 'listxattr', 'lseek', 'madvise', 'mkdirat', 'mknodat', 'mmap', 'mprotect', 'munmap',
  'name_to_handle_at', 'newfstatat', 'open_by_handle_at', 'openat', 'openat2', 'pipe2', 'pkey_alloc', 'pread64',
  'preadv2', 'prlimit64', 'pwrite64', 'pwritev2', 'read', 'readlink', 'readlinkat', 'recvmsg', 'removexattr',
  'rename', 'renameat', 'renameat2', 'rseq', 'rt_sigaction', 'rt_sigprocmask', 'sched_getaffinity',
  'set_robust_list', 'set_tid_address', 'setxattr', 'statx', 'symlinkat', 'sysinfo', 'umask', 'uname', 'unlinkat',
  'utimensat', 'write',
];

const UNMEASURED = [
  // handlers: FSYNC/FSYNCDIR, FALLOCATE, COPY_FILE_RANGE, SYNCFS, chmod where fchmodat2 is missing, poll of the fanotify queue
  'fsync', 'fdatasync', 'syncfs', 'fallocate', 'copy_file_range', 'fchmodat', 'fchmod', 'poll', 'ppoll', 'close_range',
  // Node and libuv: a thread ending, signal delivery and restart, timers where the vDSO is not used,
  // vectored I/O on the IPC channel, sending on it, raise/abort
  'exit', 'rt_sigreturn', 'restart_syscall', 'clock_gettime', 'clock_nanosleep', 'nanosleep', 'gettimeofday',
  'sched_yield', 'readv', 'writev', 'sendmsg', 'tgkill', 'kill', 'mremap', 'epoll_wait', 'getppid',
];

export const SECCOMP_ALLOW: readonly string[] = [...MEASURED, ...UNMEASURED];
