/**
 * `handlefs virtiofsd [options]`: virtiofsd's command line, so that QEMU users, libvirt
 * (`<binary path=.../>`), Kata and cloud-hypervisor can run handlefs in its place. The Rust
 * virtiofsd's options (`--opt=value` and `--opt value`) and the C virtiofsd's `-o a,b=c` list (QEMU
 * 7.2, and libvirt before the "separate-options" capability) are parsed into the Config of the
 * filesystem, validated by makeConfig as for `handlefs mount`, and the plan of the vhost-user side.
 * An option of virtiofsd's that handlefs cannot honour is a usage error that names it: none is
 * ignored. Errors are ConfigErrors (one line, exit 2).
 */
import { ConfigError, makeConfig, MIN_FD_BUDGET, parseIntOption, type Config, type RawOptions } from '../config.js';
import type { ReopenStrategy } from '../fs/options.js';
import type { VhostPlan } from '../frontends/vhost-user/index.js';

export type VirtiofsdCommand = { kind: 'virtiofsd'; config: Config; vhost: VhostPlan } | { kind: 'print'; text: string } | { kind: 'version' };

/**
 * The vhost-user backend program conventions' --print-capabilities: "separate-options" tells
 * libvirt to pass --shared-dir, --cache ... instead of `-o`; "migrate-precopy" is not claimed (no
 * migration of the device state).
 */
export const CAPABILITIES = JSON.stringify({ type: 'fs', features: ['separate-options'] }, null, 2);

/** virtio-fs's config space holds the tag in 36 bytes. */
const MAX_TAG_BYTES = 36;

/** virtiofsd's --inode-file-handles onto how handlefs reopens an evicted fd (identity is always the handle). */
const INODE_FILE_HANDLES: Readonly<Record<string, ReopenStrategy>> = { never: 'path', prefer: 'auto', fallback: 'auto', mandatory: 'handle' };

/** virtiofsd's level names that are not ours (Rust: off; C: err). */
const LOG_LEVEL_NAMES: Readonly<Record<string, string>> = { err: 'error', off: 'silent' };

export const VIRTIOFSD_USAGE = `usage: handlefs virtiofsd --shared-dir=DIR (--socket-path=PATH | --fd=FDNUM) [options]
       (also installed as handlefs-virtiofsd)

Serve DIR to a virtual machine as a virtio-fs device through the vhost-user protocol, in the
foreground: the command line of virtiofsd, for QEMU, libvirt (<binary path=.../>), Kata and
cloud-hypervisor. Each option is virtiofsd's unless marked "handlefs's own"; virtiofsd options not
listed here, and values marked "refused", are a usage error (exit 2) that names them.

where the VMM connects:
  --socket-path=PATH        listen on the vhost-user UNIX socket PATH (--socket=PATH, the Rust
                            virtiofsd's deprecated name, is the same)
  --fd=FDNUM                accept on FDNUM, a UNIX socket that already listens (libvirt passes
                            one); not with --socket-path or --socket-group
  --socket-group=GROUP      give the socket of --socket-path to GROUP, readable and writable by it
  --keep-listening          handlefs's own: when the VMM disconnects, wait for the next connection
                            instead of exiting (virtiofsd, and handlefs without it, exit)
  --supervise               handlefs's own: the VMM's connection stays with this process while a
                            worker process serves the guest; SIGHUP moves it to a new worker (an
                            upgrade), and a worker that dies is replaced (requests it had taken
                            get EIO): the guest's mount survives both. No request passes the
                            supervisor (the worker has the guest's memory and queues)
  --tag=TAG                 the tag in the device's config space (1 to 36 bytes), for VMMs that
                            read it (GET_CONFIG); QEMU sets its own (tag=) and never asks
  --thread-pool-size=N      threads for blocking I/O (libuv's pool, UV_THREADPOOL_SIZE; 0: leave
                            it, libuv's default 4)
  --threads=N|auto          handlefs's own: serving threads, one per request queue offered to the
                            VMM (default 1; auto: one per CPU). A guest spreads its requests over
                            the queues only where its driver does (Linux 6.11 and later) and the
                            VMM gives it as many (QEMU: vhost-user-fs-pci num-request-queues=N);
                            not with --supervise
  --rlimit-nofile=N         set RLIMIT_NOFILE to N before the share is opened (0: leave it, the
                            default); --fd-budget auto follows it

the share:
  --shared-dir=DIR, -o source=DIR
                            the directory to share (required)
  --cache=auto|always|metadata|never, -o cache=...
                            what the guest may cache: never (also: none) = nothing (direct I/O),
                            metadata = attributes for a day but no file data, auto = attributes
                            1 s and file data until it changes, always = attributes and file data
                            for a day (default auto)
  --readonly                refuse every modification (EROFS)
  --writeback, -o writeback|no_writeback
                            the guest's writeback cache (FUSE_WRITEBACK_CACHE); default off
  --xattr, --no-xattr, -o xattr|no_xattr
                            serve extended attributes; default off, as virtiofsd, and on with
                            --xattrmap, --posix-acl or --security-label (which need them)
  --xattrmap=RULES, -o xattrmap=RULES
                            map xattr names between guest and host (virtiofsd's rules, e.g.
                            ':map::user.virtiofs.:')
  --posix-acl, -o posix_acl|no_posix_acl
                            the guest's kernel enforces POSIX ACLs (FUSE_POSIX_ACL); not with
                            --translate-uid/-gid
  --security-label, -o security_label|no_security_label
                            set the security label the guest sends with each create
  --announce-submounts, --no-announce-submounts, -o announce_submounts
                            mark directories that are mount points below DIR, so that the guest
                            gives each its own st_dev (default on, as the Rust virtiofsd)
  --preserve-noatime        keep the guest's O_NOATIME on host opens (dropped by default)
  --translate-uid=RULE, --translate-gid=RULE
                            translate ids between guest and host (repeatable): map:, guest:,
                            host:, squash-guest:, squash-host:, forbid-guest: as virtiofsd
  --inode-file-handles=never|prefer|mandatory
                            handlefs keeps every inode as its sealed file handle and holds at most
                            --fd-budget fds; this picks how an evicted fd is reopened: never = by
                            re-walking the path from the parent with an identity check (no
                            capability needed), prefer = by open_by_handle_at when
                            CAP_DAC_READ_SEARCH is held, else by path (the default), mandatory = by
                            open_by_handle_at, failing at start without it (fallback = prefer)
  --fd-budget=N|auto        handlefs's own: most fds kept open on the share (default auto, from
                            RLIMIT_NOFILE; minimum ${MIN_FD_BUDGET})
  --handle-key-file=FILE    handlefs's own: the 32-byte key that seals file handles (created 0600
                            if absent); without it the key, and so every handle, dies with the
                            process
  --state-file=FILE         handlefs's own: keep the sealed records of the node ids the guest holds
                            in FILE, for the next server with the same key; needs --handle-key-file

logging and process:
  --log-level=LEVEL, -o log_level=LEVEL
                            error (err), warn (default), info, debug, trace, off; JSON lines on
                            stderr; debug traces every request
  --stats-file=FILE         handlefs's own: write the server's counters to FILE as JSON, every
                            second and at exit (with --threads, what each serving thread served)
  -d, -o debug              --log-level=debug
  -f                        run in the foreground: handlefs always does
  --sandbox=namespace|chroot|none
                            with --supervise: the worker (the process that maps guest memory and
                            serves the guest) runs in new mount, pid and network namespaces, in a
                            read-only root holding only the share, Node and handlefs (namespace),
                            or chroots itself into the share once loaded (chroot: weaker, for
                            where namespaces are not allowed), with fewer capabilities (handlefs
                            mount --help says which). Default none: virtiofsd's default is
                            namespace, but here it needs --supervise; a careful operator passes
                            --supervise --sandbox=namespace --seccomp=kill
  --seccomp=kill|log|none   with --supervise: the worker's syscall allow-list (kill: any other
                            syscall kills it, and the supervisor starts a successor; log: logged).
                            Default none, as --sandbox; trap is refused
  --modcaps=+cap:-cap       with --sandbox=namespace: adjust the capabilities the worker keeps
  --print-capabilities      print the vhost-user backend capabilities (JSON) and exit; the other
                            options are not looked at
  -h, --help                this text
  -V, --version             print the version

accepted as what handlefs always does: --killpriv-v2 and -o killpriv_v2 (HANDLE_KILLPRIV_V2 when
  the guest offers it), -o no_allow_direct_io (O_DIRECT is dropped from host opens), -o readdirplus,
  -o flock and -o posix_lock (remote locks are served).
refused (not supported yet): --no-killpriv-v2, --allow-direct-io, --allow-mmap, --no-readdirplus,
  --uid-map, --gid-map, --syslog, --daemonize, --migration-mode, --migration-on-error,
  --migration-verify-handles, --migration-confirm-paths; -o no_killpriv_v2, allow_direct_io,
  no_readdirplus, no_flock, no_posix_lock, timeout, max_idle_threads, allow_root, and
  -o sandbox=... as --sandbox.

signals: SIGTERM and SIGINT end the server. exit status: 0 after the VMM disconnected (or a signal),
  1 when setting up or serving fails, 2 on a usage error.
install for libvirt and QEMU: scripts/handlefs-virtiofsd --install-description [DIR] writes
  DIR/50-handlefs-virtiofsd.json (default /etc/qemu/vhost-user) naming that script.`;

interface State {
  raw: RawOptions;
  sharedDir?: string;
  socketPath?: string;
  fd?: number;
  socketGroup?: string;
  threadPoolSize: number;
  rlimitNofile: number | null;
  keepListening: boolean;
  tag?: string;
}

/** An option: sets the state from its value (`value: false`: a flag, called with ''); `shown` names it for messages. */
interface Opt {
  value: boolean;
  set: (s: State, v: string, shown: string) => void;
}
/** An option of virtiofsd's that handlefs does not honour: why, for the usage error. */
type Refused = { refused: string };
type Entry = Opt | Refused;

const flag = (set: (s: State) => void): Opt => ({ value: false, set: (s) => set(s) });
const value = (set: Opt['set']): Opt => ({ value: true, set });
const raw = <K extends keyof RawOptions>(k: K, v: RawOptions[K]): Opt => flag((s) => (s.raw[k] = v));
const rawValue = (k: 'cache' | 'xattrmap' | 'fdBudget' | 'handleKeyFile' | 'stateFile' | 'statsFile'): Opt => value((s, v) => (s.raw[k] = v));
const refused = (why: string): Refused => ({ refused: why });

/** A value that names one of a set: an accepted one (returned), a refused one (usage error with why), or a bad one. */
function choice(shown: string, v: string, accepted: readonly string[], refusedValues: Readonly<Record<string, string>>): string {
  if (accepted.includes(v)) return v;
  const why = refusedValues[v];
  if (why !== undefined) throw new ConfigError(`${shown}=${v} is not supported: ${why}`);
  throw new ConfigError(`${shown} must be one of ${[...accepted, ...Object.keys(refusedValues)].join('|')}, got '${v}'`);
}
const NO_TRAP = 'SIGSYS would kill Node as surely as kill does; use --seccomp=kill or log';

const LONG: Readonly<Record<string, Entry>> = {
  'shared-dir': value((s, v) => (s.sharedDir = v)),
  'socket-path': value((s, v) => (s.socketPath = v)),
  socket: value((s, v) => (s.socketPath = v)),
  fd: value((s, v) => {
    const fd = parseIntOption('fd', v);
    // 0, 1 and 2 are stdin, stdout and stderr (the backend program conventions)
    if (fd < 3 || fd > 0x7fffffff) throw new ConfigError(`--fd must be the number of a listening socket (3 or more), got '${v}'`);
    s.fd = fd;
  }),
  'socket-group': value((s, v) => (s.socketGroup = v)),
  'keep-listening': flag((s) => (s.keepListening = true)),
  supervise: raw('supervise', true),
  tag: value((s, v) => {
    const n = Buffer.byteLength(v);
    if (n < 1 || n > MAX_TAG_BYTES) throw new ConfigError(`--tag must be 1 to ${MAX_TAG_BYTES} bytes, got ${n}`);
    s.tag = v;
  }),
  'thread-pool-size': value((s, v) => (s.threadPoolSize = parseIntOption('thread-pool-size', v))),
  threads: value((s, v) => (s.raw.threads = v)),
  'rlimit-nofile': value((s, v) => {
    const n = parseIntOption('rlimit-nofile', v);
    s.rlimitNofile = n === 0 ? null : n;
  }),
  cache: value((s, v) => (s.raw.cache = v === 'none' ? 'never' : v)),
  readonly: raw('readonly', true),
  writeback: raw('writeback', true),
  'no-writeback': raw('writeback', false),
  xattr: raw('xattr', true),
  'no-xattr': raw('xattr', false),
  xattrmap: rawValue('xattrmap'),
  'posix-acl': raw('posixAcl', true),
  'no-posix-acl': raw('posixAcl', false),
  'security-label': raw('securityLabel', true),
  'no-security-label': raw('securityLabel', false),
  'announce-submounts': raw('announceSubmounts', true),
  'no-announce-submounts': raw('announceSubmounts', false),
  'preserve-noatime': raw('preserveNoatime', true),
  'translate-uid': value((s, v) => (s.raw.translateUid = [...(s.raw.translateUid ?? []), v])),
  'translate-gid': value((s, v) => (s.raw.translateGid = [...(s.raw.translateGid ?? []), v])),
  'inode-file-handles': value((s, v) => {
    const r = INODE_FILE_HANDLES[v];
    if (r === undefined) throw new ConfigError(`--inode-file-handles must be one of never|prefer|mandatory, got '${v}'`);
    s.raw.reopen = r;
  }),
  'fd-budget': rawValue('fdBudget'),
  'handle-key-file': rawValue('handleKeyFile'),
  'state-file': rawValue('stateFile'),
  'stats-file': rawValue('statsFile'),
  'log-level': value((s, v) => (s.raw.logLevel = LOG_LEVEL_NAMES[v] ?? v)),
  sandbox: value((s, v, shown) => (s.raw.sandbox = choice(shown, v, ['namespace', 'chroot', 'none'], {}))),
  seccomp: value((s, v, shown) => (s.raw.seccomp = choice(shown, v, ['kill', 'log', 'none'], { trap: NO_TRAP }))),
  // HANDLE_KILLPRIV_V2 is negotiated whenever the guest offers it
  'killpriv-v2': flag(() => {}),
  'no-killpriv-v2': refused('handlefs always negotiates HANDLE_KILLPRIV_V2 and clears setuid/setgid as the kernel would'),
  'allow-direct-io': refused("O_DIRECT is dropped from host opens (virtiofsd's default); --cache=never gives the guest direct I/O"),
  'allow-mmap': refused('with --cache=never or metadata files are opened for direct I/O, which the guest cannot mmap'),
  'no-readdirplus': refused('READDIRPLUS is always offered'),
  modcaps: value((s, v) => (s.raw.modcaps = v)),
  'uid-map': refused('no user namespace sandbox; --translate-uid maps ids without one'),
  'gid-map': refused('no user namespace sandbox; --translate-gid maps ids without one'),
  syslog: refused('logs go to stderr as JSON lines; the service manager collects them'),
  daemonize: refused('a vhost-user back-end must not daemonize itself (the backend program conventions)'),
  'migration-mode': refused('no migration of the device state'),
  'migration-on-error': refused('no migration of the device state'),
  'migration-verify-handles': refused('no migration of the device state'),
  'migration-confirm-paths': refused('no migration of the device state'),
};

/** The C virtiofsd's `-o` names: another spelling of a long option (and its value), or their own entry. */
const COMPAT: Readonly<Record<string, Entry | { long: string; value?: string }>> = {
  source: { long: 'shared-dir' },
  cache: { long: 'cache' },
  xattr: { long: 'xattr' },
  no_xattr: { long: 'no-xattr' },
  xattrmap: { long: 'xattrmap' },
  writeback: { long: 'writeback' },
  no_writeback: { long: 'no-writeback' },
  posix_acl: { long: 'posix-acl' },
  no_posix_acl: { long: 'no-posix-acl' },
  security_label: { long: 'security-label' },
  no_security_label: { long: 'no-security-label' },
  announce_submounts: { long: 'announce-submounts' },
  killpriv_v2: { long: 'killpriv-v2' },
  no_killpriv_v2: { long: 'no-killpriv-v2' },
  allow_direct_io: { long: 'allow-direct-io' },
  no_readdirplus: { long: 'no-readdirplus' },
  log_level: { long: 'log-level' },
  // the Rust virtiofsd's spelling of it
  loglevel: { long: 'log-level' },
  debug: { long: 'log-level', value: 'debug' },
  sandbox: { long: 'sandbox' },
  modcaps: { long: 'modcaps' },
  // what handlefs always does
  no_allow_direct_io: flag(() => {}),
  readdirplus: flag(() => {}),
  flock: flag(() => {}),
  posix_lock: flag(() => {}),
  no_flock: refused('remote flock locks are always served'),
  no_posix_lock: refused('remote POSIX locks are always served'),
  timeout: refused('the cache timeouts follow --cache'),
  max_idle_threads: refused('no per-queue worker threads'),
  allow_root: refused('the guest reaches the share through its own kernel, not through a mount option'),
};

/** `-o a,b=c`: its items; a comma is escaped as ',,' (libvirt) or '\,' (the C virtiofsd). */
function compatItems(list: string): string[] {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!;
    if (c === '\\' && i + 1 < list.length) cur += list[++i];
    else if (c === ',' && list[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (c === ',') {
      items.push(cur);
      cur = '';
    } else cur += c;
  }
  items.push(cur);
  return items;
}

/** Apply one option; `shown` is how the operator wrote it, for the messages. */
function apply(s: State, e: Entry | undefined, shown: string, v: string | undefined): void {
  if (e === undefined) throw new ConfigError(`unknown option '${shown}'`);
  if ('refused' in e) throw new ConfigError(`${shown} is not supported yet: ${e.refused}`);
  if (e.value && v === undefined) throw new ConfigError(`option '${shown}' needs a value`);
  if (!e.value && v !== undefined) throw new ConfigError(`option '${shown}' takes no value`);
  e.set(s, v ?? '', shown);
}

function applyCompat(s: State, list: string): void {
  for (const item of compatItems(list)) {
    const eq = item.indexOf('=');
    const name = eq < 0 ? item : item.slice(0, eq);
    const c = COMPAT[name];
    const shown = `-o ${name}`;
    if (c !== undefined && 'long' in c) apply(s, LONG[c.long], shown, c.value ?? (eq < 0 ? undefined : item.slice(eq + 1)));
    else apply(s, c, shown, eq < 0 ? undefined : item.slice(eq + 1));
  }
}

/** The value of an option written `--opt value` / `-o value`: the next argument, unless it is an option. */
function nextValue(argv: readonly string[], i: number): string | undefined {
  const v = argv[i + 1];
  return v === undefined || (v.startsWith('-') && v !== '-') ? undefined : v;
}

/** Parse the arguments after `virtiofsd`. Throws ConfigError (a usage error) for anything malformed. */
export function parseVirtiofsdCommandLine(argv: readonly string[]): VirtiofsdCommand {
  // the conventions: print the capabilities whatever else is there
  if (argv.includes('--print-capabilities')) return { kind: 'print', text: CAPABILITIES };
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'print', text: VIRTIOFSD_USAGE };
  if (argv.includes('--version') || argv.includes('-V')) return { kind: 'version' };

  const s: State = { raw: {}, threadPoolSize: 0, rlimitNofile: null, keepListening: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const e = LONG[name];
      let v = eq < 0 ? undefined : a.slice(eq + 1);
      if (v === undefined && e !== undefined && 'value' in e && e.value) {
        v = nextValue(argv, i);
        if (v !== undefined) i++;
      }
      apply(s, e, `--${name}`, v);
    } else if (a.startsWith('-') && a.length > 1 && a !== '--') {
      // short options, bundled as clap allows (-df); -o takes the rest of the argument or the next one
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        if (c === 'd') apply(s, LONG['log-level'], '-d', 'debug');
        else if (c === 'f') continue;
        else if (c === 'o') {
          let list: string | undefined = a.slice(j + 1).replace(/^=/, '');
          if (list === '') {
            list = nextValue(argv, i);
            if (list !== undefined) i++;
          }
          if (list === undefined) throw new ConfigError("option '-o' needs a value");
          applyCompat(s, list);
          break;
        } else throw new ConfigError(`unknown option '-${c}'`);
      }
    } else {
      throw new ConfigError(`unexpected argument '${a}': virtiofsd takes options only (--shared-dir=DIR, --socket-path=PATH)`);
    }
  }
  return build(s);
}

function build(s: State): VirtiofsdCommand {
  if (s.sharedDir === undefined) throw new ConfigError('missing --shared-dir=DIR (or -o source=DIR)');
  if (s.fd !== undefined && s.socketPath !== undefined) throw new ConfigError('--fd and --socket-path exclude each other');
  if (s.fd === undefined && s.socketPath === undefined) throw new ConfigError('missing --socket-path=PATH or --fd=FDNUM');
  if (s.socketPath === '') throw new ConfigError('--socket-path must not be empty');
  // the caller made the socket of --fd; it sets its group
  if (s.socketGroup !== undefined && s.fd !== undefined) throw new ConfigError('--socket-group goes with --socket-path, not --fd');
  if (s.socketGroup === '') throw new ConfigError('--socket-group must not be empty');
  const listen = s.fd !== undefined ? { fd: s.fd } : { path: s.socketPath! };
  const r = s.raw;
  const o: RawOptions = {
    ...r,
    // virtiofsd serves xattrs when asked, or when an option needs them
    xattr: r.xattr ?? Boolean(r.xattrmap !== undefined || r.posixAcl || r.securityLabel),
    // the Rust virtiofsd announces submounts unless told not to; a virtio-fs guest can use them
    announceSubmounts: r.announceSubmounts ?? true,
    // the notifications go to /dev/fuse; virtio-fs would need its notification queue
    hostNotify: false,
  };
  // Config's mountpoint: where the client is, for the logs
  const where = 'fd' in listen ? `vhost-user fd ${listen.fd}` : `vhost-user socket ${listen.path}`;
  const vhost: VhostPlan = {
    listen,
    socketGroup: s.socketGroup ?? null,
    threadPoolSize: s.threadPoolSize,
    rlimitNofile: s.rlimitNofile,
    exitOnDisconnect: !s.keepListening,
    ...(s.tag === undefined ? {} : { tag: s.tag }),
  };
  // a supervised worker serves every queue on its one thread
  if (r.supervise && r.threads !== undefined && r.threads !== '1') throw new ConfigError('--threads above 1 does not go with --supervise');
  const config = makeConfig(s.sharedDir, where, o);
  // the mount's default (threads per CPU where io_uring is on) is /dev/fuse's: here one unless --threads says
  config.threadsFollowRing = false;
  return { kind: 'virtiofsd', config, vhost };
}
