/**
 * The command line: `handlefs mount SHARED MOUNTPOINT [options]`. Option names follow virtiofsd
 * where it has one (--cache, --writeback, --xattr, --readonly, --allow-direct-io ...). Parsing
 * only: values are validated by makeConfig (src/config.ts).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, makeConfig, MIN_FD_BUDGET, type Config, type RawOptions } from '../config.js';
import { parseVirtiofsdCommandLine, type VirtiofsdCommand } from './virtiofsd-args.js';

/** A usage error: exit 2, one line. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Command = { kind: 'help' } | { kind: 'version' } | { kind: 'mount'; config: Config } | { kind: 'rotate-key'; file: string; keep: number }
  | VirtiofsdCommand;

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  'fd-budget': { type: 'string' },
  reopen: { type: 'string' },
  'handle-key-file': { type: 'string' },
  'state-file': { type: 'string' },
  cache: { type: 'string' },
  writeback: { type: 'boolean' },
  passthrough: { type: 'boolean' },
  readonly: { type: 'boolean' },
  'allow-other': { type: 'boolean' },
  'default-permissions': { type: 'boolean' },
  xattr: { type: 'boolean' },
  nonempty: { type: 'boolean' },
  'log-level': { type: 'string' },
  frontend: { type: 'string' },
  'max-write': { type: 'string' },
  'stats-file': { type: 'string' },
  supervise: { type: 'boolean' },
  threads: { type: 'string' },
  'poll-us': { type: 'string' },
  'io-uring': { type: 'string' },
  'host-notify': { type: 'boolean' },
  sandbox: { type: 'string' },
  seccomp: { type: 'string' },
  modcaps: { type: 'string' },
  keep: { type: 'string' },
  'translate-uid': { type: 'string', multiple: true },
  'translate-gid': { type: 'string', multiple: true },
  'posix-acl': { type: 'boolean' },
  xattrmap: { type: 'string' },
  'security-label': { type: 'boolean' },
  'announce-submounts': { type: 'boolean' },
  'preserve-noatime': { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

export const USAGE = `usage: handlefs mount SHARED MOUNTPOINT [options]

Serve the directory SHARED at MOUNTPOINT through FUSE, in the foreground, until SIGINT/SIGTERM or
until the mount is unmounted (umount MOUNTPOINT). MOUNTPOINT must be an existing empty directory
outside SHARED. Mounts with mount(2) as root, through fusermount3 otherwise. Identity of files is
their sealed file handle, open fds are a bounded cache.

options:
  --fd-budget N|auto        most fds kept open on the shared tree; auto derives it from
                            RLIMIT_NOFILE (default auto, minimum ${MIN_FD_BUDGET})
  --reopen auto|handle|path how evicted fds are reopened: open_by_handle_at (needs
                            CAP_DAC_READ_SEARCH), a re-walk from the parent with an identity
                            check, or auto = handle when the capability is held (default auto)
  --handle-key-file FILE    load (or create, mode 0600) the 32-byte key that seals file handles;
                            without it the key is ephemeral and handles die with the process
  --state-file FILE         keep the sealed records of every node id a client may hold a handle
                            to in FILE (0600; appended as they change, compacted), so that a new
                            server with the same key file resolves them after an unmount, a
                            reboot or a SIGKILL; needs --handle-key-file
  --cache auto|always|metadata|never
                            what the client may cache (virtiofsd policies): never = nothing
                            (direct I/O), metadata = attributes for a day but no file data,
                            auto = attributes 1 s and file data until it changes, always =
                            attributes for a day and file data (default auto)
  --writeback               enable the kernel's writeback cache (FUSE_WRITEBACK_CACHE)
  --passthrough             let the kernel read and write the backing files directly
                            (FUSE_PASSTHROUGH backing files, needs CAP_SYS_ADMIN; not with
                            --writeback or --supervise)
  --readonly                refuse every modification (EROFS); mounts read-only
  --allow-other             let users other than the mounting user access the mount
  --default-permissions, --no-default-permissions
                            let the kernel check permissions (mount option default_permissions);
                            default: on with --allow-other, off without (then only the mounting
                            user reaches the mount, and the host checks the server's syscalls,
                            made with that user's rights)
  --xattr, --no-xattr       serve extended attributes (default on)
  --nonempty                allow a MOUNTPOINT that is not empty
  --log-level LEVEL         fatal|error|warn|info|debug|trace|silent (default warn); debug traces
                            every request
  --frontend raw|fuse-native
                            raw = own FUSE protocol on /dev/fuse (default); fuse-native = libfuse2's
                            high-level API through fuse-native (paths, millisecond times: see README)
  --max-write BYTES         largest write request, a multiple of 4096 up to 1m (default 1m;
                            k/m suffixes allowed)
  --stats-file FILE         write the server's counters (fds, evictions, reopens, ESTALE, ...) as
                            JSON to FILE every second and at exit
  --supervise               keep /dev/fuse in a supervisor and run the filesystem in a worker
                            process: SIGHUP upgrades the worker (new code, same mount), a crashed
                            worker is restarted; client handles and node ids survive both
  --threads N|auto          serving threads (auto: one per CPU; default: one per CPU where root
                            switched FUSE over io_uring on, see --io-uring, else 1): the others each
                            read a clone of the /dev/fuse connection or their CPU's io_uring queue,
                            bound to a CPU, and serve getattr and readlink of known inodes and
                            reads, writes, fsync and flush of open files there; every other request
                            is handed to the thread that runs the filesystem (raw, not --supervise;
                            README "Serving threads")
  --poll-us N               after each reply, the thread that runs the filesystem keeps polling
                            for the next request for N microseconds before it sleeps (default
                            200; 0: sleep at once): a sleeping thread's wake-up costs an IPI, on a
                            VM a halt exit, and a client's next request mostly comes sooner
  --io-uring auto|on|off    FUSE over io_uring: each request reaches the serving thread of its
                            caller's CPU, and one syscall answers it and fetches the next. auto
                            (default): with --threads above 1, when the kernel offers it (once root
                            wrote Y to /sys/module/fuse/parameters/enable_uring); on: always,
                            required (raw, not --supervise; README "FUSE over io_uring")
  --translate-uid RULE, --translate-gid RULE
                            translate user (group) ids between the client and the host, as
                            virtiofsd's options of the same name; repeatable, RULE is
                            map:GUEST:HOST:COUNT (both ways), guest:GUEST:HOST:COUNT or
                            host:HOST:GUEST:COUNT (one way), squash-guest:GUEST:HOST:COUNT or
                            squash-host:HOST:GUEST:COUNT (a range onto one id), forbid-guest:GUEST:COUNT
                            (EPERM); ids no rule covers stay as they are
  --posix-acl               the kernel enforces POSIX ACLs (FUSE_POSIX_ACL, virtiofsd --posix-acl;
                            implies default_permissions); not with --translate-uid/-gid
  --host-notify, --no-host-notify
                            tell the client at once when the host changes a name, a file or its
                            attributes behind the server (FUSE_NOTIFY_INVAL_ENTRY/_INODE from a
                            fanotify watch of the shared filesystem, needs CAP_SYS_ADMIN; without
                            it the client sees host changes when its cache times out). Default on
                            with the raw frontend unless --cache never; not with --supervise or
                            --frontend fuse-native (no peer of virtiofsd does this)
  --sandbox namespace|chroot|none
                            (with --supervise) namespace: start the worker in new mount, pid and
                            network namespaces, pivot_root'ed into a root holding only the share,
                            Node and the handlefs tree (read-only), the --stats-file/--state-file
                            directories and its own /proc; the supervisor keeps /dev/fuse and the
                            mount outside. chroot, where namespaces are not allowed: the worker
                            chroots itself into the share once loaded (it keeps /proc/self/fd
                            open; weaker than namespace, as virtiofsd's chroot; no --stats-file
                            or --state-file). Default none: the sandbox needs the worker split of
                            --supervise (measured at 0.86x the plain server's create+stat+unlink
                            rate: records for every new inode and open file), so it is not
                            imposed on every mount; a careful operator runs
                            --supervise --sandbox namespace --seccomp kill
  --seccomp kill|log|none   (with --supervise) let the worker make only the syscalls on the
                            measured allow-list (src/sandbox/seccomp-allow.ts): any other kills it
                            (kill; the supervisor answers its requests EIO and restarts it) or is
                            written to the kernel log (log); default none, as --sandbox
  --modcaps +CAP:-CAP       (with --supervise) adjust the capabilities the worker keeps; it keeps
                            chown, dac_override, fowner, fsetid, mknod, setfcap and, when files
                            are reopened by handle, dac_read_search (which lets open_by_handle_at
                            reach any file of the share's filesystem: --reopen path drops it).
                            sys_admin is dropped: +sys_admin brings back the fanotify rename
                            watch and trusted.* xattrs
  --xattrmap RULES          map xattr names between client and host (virtiofsd's --xattrmap
                            rules :type:scope:key:prepend: and :map:KEY:PREPEND:, see README),
                            e.g. ':map::user.virtiofs.:' keeps a client's security.* and
                            trusted.* under user.virtiofs.* where the server cannot write them
  --security-label          set the security label (e.g. SELinux) the client's kernel sends
                            with each create, mkdir, mknod and symlink on the new node
                            (virtiofsd's --security-label, FUSE_SECURITY_CTX; the name goes
                            through --xattrmap; fails the mount if the kernel cannot send it)
  --announce-submounts      mark directories that are mount points below SHARED, so that a
                            client that supports it (virtio-fs; not /dev/fuse) gives each its
                            own st_dev (virtiofsd's --announce-submounts, FUSE_SUBMOUNTS)
  --preserve-noatime        open files with O_NOATIME when the client did (virtiofsd's
                            --preserve-noatime); by default the flag is dropped, as virtiofsd
                            does: without CAP_FOWNER it fails (EPERM) on others' files
  -h, --help                this text
  -V, --version             print the version

       handlefs virtiofsd --shared-dir=DIR (--socket-path=PATH | --fd=FDNUM) [virtiofsd's options]
  serve DIR to a virtual machine as a virtio-fs device over vhost-user, with virtiofsd's command
  line (QEMU, libvirt, Kata); its options: handlefs virtiofsd --help

       handlefs rotate-key KEYFILE [--keep N]
  put a new key in front of the key file (created 0600 if absent) and keep the N previous keys
  (default 1, at most 7): handles and state sealed under a kept key still verify; a server picks
  the new key up when it starts (a supervised one: at its next start)

signals: SIGINT, SIGTERM unmount (a busy mount is detached and its open files are served until
  closed; a second signal stops at once); SIGHUP upgrades a --supervise server and is otherwise
  logged and ignored: it never unmounts.
exit status: 0 after a clean unmount, 1 when setting up or serving fails, 2 on a usage error.
environment: HANDLEFS_READY_FD=N writes "ready\\n" to fd N once the mount is live (for scripts and
  tests that start the server), then closes fd N.`;

/** Parse argv (without node and the script). Throws UsageError for anything malformed. */
export function parseCommandLine(argv: readonly string[]): Command {
  // virtiofsd's command line is its own (-o lists, virtiofsd's option names): src/cli/virtiofsd-args.ts
  if (argv[0] === 'virtiofsd') return asUsage(() => parseVirtiofsdCommandLine(argv.slice(1)));
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, allowNegative: true, strict: true });
  } catch (e) {
    throw new UsageError(parseArgsMessage(e));
  }
  const v = parsed.values;
  if (v.help) return { kind: 'help' };
  if (v.version) return { kind: 'version' };
  const pos = parsed.positionals;
  if (pos.length === 0) throw new UsageError('missing command: handlefs mount SHARED MOUNTPOINT [options]');
  if (pos[0] === 'rotate-key') {
    if (pos.length !== 2) throw new UsageError('usage: handlefs rotate-key KEYFILE [--keep N]');
    const keep = v.keep === undefined ? 1 : Number(v.keep);
    if (typeof v.keep === 'boolean' || !Number.isInteger(keep) || keep < 0 || keep > 7) throw new UsageError('--keep must be a whole number from 0 to 7');
    return { kind: 'rotate-key', file: pos[1]!, keep };
  }
  if (v.keep !== undefined) throw new UsageError("--keep goes with 'handlefs rotate-key'");
  if (pos[0] !== 'mount') throw new UsageError(`unknown command '${pos[0]}': the commands are mount, virtiofsd and rotate-key`);
  if (pos.length < 3) throw new UsageError(`missing ${pos.length === 1 ? 'SHARED and MOUNTPOINT' : 'MOUNTPOINT'}: handlefs mount SHARED MOUNTPOINT`);
  if (pos.length > 3) throw new UsageError(`unexpected argument '${pos[3]}'`);
  // allowNegative accepts --no-<string option> too; there is nothing to negate there
  for (const k of ['fd-budget', 'reopen', 'handle-key-file', 'state-file', 'cache', 'log-level', 'frontend', 'max-write', 'stats-file', 'threads', 'poll-us', 'io-uring', 'translate-uid', 'translate-gid', 'sandbox', 'seccomp', 'modcaps', 'xattrmap'] as const) {
    if (typeof v[k] === 'boolean') throw new UsageError(`unknown option '--no-${k}'`);
  }
  const raw: RawOptions = {
    fdBudget: v['fd-budget'] as string | undefined,
    reopen: v.reopen as string | undefined,
    handleKeyFile: v['handle-key-file'] as string | undefined,
    stateFile: v['state-file'] as string | undefined,
    cache: v.cache as string | undefined,
    writeback: v.writeback,
    passthrough: v.passthrough,
    readonly: v.readonly,
    allowOther: v['allow-other'],
    defaultPermissions: v['default-permissions'],
    xattr: v.xattr,
    nonempty: v.nonempty,
    logLevel: v['log-level'] as string | undefined,
    frontend: v.frontend as string | undefined,
    maxWrite: v['max-write'] as string | undefined,
    statsFile: v['stats-file'] as string | undefined,
    supervise: v.supervise,
    threads: v.threads as string | undefined,
    pollUs: v['poll-us'] as string | undefined,
    ioUring: v['io-uring'] as string | undefined,
    translateUid: v['translate-uid'] as string[] | undefined,
    translateGid: v['translate-gid'] as string[] | undefined,
    posixAcl: v['posix-acl'],
    hostNotify: v['host-notify'],
    sandbox: v.sandbox as string | undefined,
    seccomp: v.seccomp as string | undefined,
    modcaps: v.modcaps as string | undefined,
    xattrmap: v.xattrmap as string | undefined,
    securityLabel: v['security-label'],
    announceSubmounts: v['announce-submounts'],
    preserveNoatime: v['preserve-noatime'],
  };
  return asUsage(() => ({ kind: 'mount', config: makeConfig(pos[1]!, pos[2]!, raw) }));
}

/** A ConfigError (a bad value or combination) is a usage error. */
function asUsage(parse: () => Command): Command {
  try {
    return parse();
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
}

/** node:util's messages, shortened to one line. */
function parseArgsMessage(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const msg = String(err.message ?? e);
  const opt = /'(-[^' ]+)/.exec(msg)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${opt ?? msg}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /argument missing/.test(msg) ? `option '${opt}' needs a value` : `option '${opt}' takes no value`;
    default:
      return msg.split('\n')[0]!;
  }
}
