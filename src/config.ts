/**
 * Configuration in one place (virtiofsd `Config` + `Default`, passthrough_hp `struct Fs`): one
 * `Config` type, its defaults, value validation, and the derivation of the options each layer
 * takes. The command line is parsed only in src/cli/; checks that look at the host (does the shared
 * directory exist, is /dev/fuse there) are set-up checks and live in src/cli/preflight.ts.
 */
import { availableParallelism } from 'node:os';
import type { Logger, LevelWithSilent } from 'pino';
import { buildIdMap, IdMapError } from './fs/idmap.js';
import type { CachePolicy, PassthroughOptions, ReopenStrategy } from './fs/options.js';
import type { ProtocolOptions } from './fuse/protocol-server.js';
import { parseModcaps, type CapChange } from './sandbox/capabilities.js';
import type { SandboxMode, SeccompMode } from './sandbox/launcher.js';
import { PAGE_SIZE } from './sys/constants.js';
import { processGroups } from './sys/proc-groups.js';
import { parseXattrMap, XattrMapError, type XattrMap } from './fs/xattr-map.js';

export type Frontend = 'raw' | 'fuse-native';

export const CACHE_POLICIES: readonly CachePolicy[] = ['auto', 'always', 'metadata', 'never'];
export const REOPEN_STRATEGIES: readonly ReopenStrategy[] = ['auto', 'handle', 'path'];
export const FRONTENDS: readonly Frontend[] = ['raw', 'fuse-native'];
/** --io-uring (Config.ioUring) */
export type IoUringMode = 'auto' | 'on' | 'off';
export const IO_URING_MODES: readonly IoUringMode[] = ['auto', 'on', 'off'];
export const SANDBOX_MODES: readonly SandboxMode[] = ['namespace', 'chroot', 'none'];
export const SECCOMP_MODES: readonly SeccompMode[] = ['kill', 'log', 'none'];
export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** FUSE_MAX_MAX_PAGES (256) is the kernel's cap on max_pages; larger max_write is clipped by it. */
export const MAX_WRITE_LIMIT = 256 * PAGE_SIZE;
/** Below this the fd cache thrashes on any directory walk; the core's own floor is 16. */
export const MIN_FD_BUDGET = 16;

export interface Config {
  /** the directory to share (as given; preflight resolves its realpath) */
  sharedDir: string;
  mountpoint: string;
  /** most fds kept open on the shared tree; 'auto' derives it from RLIMIT_NOFILE */
  fdBudget: number | 'auto';
  /** how evicted fds are reopened: by handle (needs CAP_DAC_READ_SEARCH), by path, or probe */
  reopen: ReopenStrategy;
  /** persistent sealing key; null = ephemeral key per process */
  handleKeyFile: string | null;
  /** where the sealed records of client-visible node ids are kept for the next server (needs handleKeyFile) */
  stateFile: string | null;
  cache: CachePolicy;
  /** FUSE_WRITEBACK_CACHE */
  writeback: boolean;
  /** FUSE_PASSTHROUGH (kernel does reads/writes on the backing file); excludes writeback */
  passthrough: boolean;
  readonly: boolean;
  /** mount option allow_other: other users may access the mount */
  allowOther: boolean;
  /**
   * mount option default_permissions: the kernel checks modes before asking the server. Default:
   * on exactly when other users may reach the mount (allowOther). Without allow_other only
   * processes of the mounting user reach it (the kernel refuses everyone else), and the server runs
   * as that user, so the host checks every syscall it makes with the same rights; the kernel's
   * own check would only cost a GETATTR of each directory changed since (one per create or unlink).
   */
  defaultPermissions: boolean;
  /** serve xattr operations (false: ENOSYS) */
  xattr: boolean;
  /** allow mounting over a non-empty directory */
  nonempty: boolean;
  logLevel: LevelWithSilent;
  frontend: Frontend;
  /** largest WRITE payload in bytes */
  maxWrite: number;
  /** write the core's counters as JSON to this file every second and at exit */
  statsFile: string | null;
  /**
   * run the filesystem in a worker process under a supervisor that holds /dev/fuse: the worker can
   * be upgraded (SIGHUP) or can crash and be restarted without unmounting
   */
  supervise: boolean;
  /**
   * serving threads on the /dev/fuse connection (src/frontends/devfuse/threads.ts): the one that
   * runs the filesystem, and count - 1 that read clones of the connection and serve open files'
   * I/O themselves (raw frontend, not supervised)
   */
  threads: number;
  /**
   * no --threads given: at start, one serving thread per CPU where root switched FUSE over io_uring
   * on in the kernel (the rings then bring each request to its caller's CPU's thread, measured to
   * pay), one elsewhere (servingThreads in src/cli/preflight.ts; raw, not supervised, not --io-uring off)
   */
  threadsFollowRing: boolean;
  /**
   * microseconds the thread that runs the filesystem keeps polling for the next request after
   * each reply (and, with serving threads, after each request handed over) before it sleeps: on a
   * VM a sleeping thread's wake-up is an IPI and a halt exit (--poll-us; 0: sleep at once)
   */
  pollUs: number;
  /**
   * FUSE over io_uring (src/frontends/devfuse/ring.ts): auto takes it with more than one serving
   * thread when the kernel offers it at INIT (root enabled it: /sys/module/fuse/parameters/enable_uring),
   * on requires it, off never asks (raw frontend, not supervised; auto is off elsewhere)
   */
  ioUring: IoUringMode;
  /** virtiofsd --translate-uid / --translate-gid rules (src/fs/idmap.ts), validated */
  translateUid: readonly string[];
  translateGid: readonly string[];
  /** FUSE_POSIX_ACL: the kernel enforces POSIX ACLs and sends the umask (virtiofsd --posix-acl) */
  posixAcl: boolean;
  /** tell the client of host changes at once (fanotify -> FUSE_NOTIFY_INVAL_*; raw in-process only) */
  hostNotify: boolean;
  /** the supervised worker's sandbox: new namespaces and root (namespace), or none */
  sandbox: SandboxMode;
  /** the supervised worker's syscall allow-list: others kill it, are logged, or no filter */
  seccomp: SeccompMode;
  /** --modcaps: changes to the capabilities a sandboxed worker keeps */
  modcaps: CapChange | null;
  // virtiofsd's xattr, label, submount and atime options
  /** --xattrmap rules (virtiofsd syntax, src/fs/xattr-map.ts); null = names pass unchanged */
  xattrmap: string | null;
  /** negotiate FUSE_SECURITY_CTX and set the label the client sends on each new node */
  securityLabel: boolean;
  /** negotiate FUSE_SUBMOUNTS and mark directories on another mount than their parent */
  announceSubmounts: boolean;
  /** pass the client's O_NOATIME to the host open (virtiofsd drops it by default) */
  preserveNoatime: boolean;
}

export const DEFAULT_CONFIG: Readonly<Omit<Config, 'sharedDir' | 'mountpoint'>> = Object.freeze({
  fdBudget: 'auto',
  reopen: 'auto',
  handleKeyFile: null,
  stateFile: null,
  cache: 'auto',
  writeback: false,
  passthrough: false,
  readonly: false,
  allowOther: false,
  defaultPermissions: false, // follows allowOther unless set (see Config)
  xattr: true,
  nonempty: false,
  logLevel: 'warn',
  frontend: 'raw',
  statsFile: null,
  supervise: false,
  threads: 1,
  threadsFollowRing: false, // set by makeConfig when --threads is not given
  pollUs: 200,
  ioUring: 'auto',
  sandbox: 'none',
  seccomp: 'none',
  modcaps: null,
  maxWrite: 1 << 20,
  translateUid: [],
  translateGid: [],
  posixAcl: false,
  hostNotify: true, // raw frontend, not supervised, cache not 'never' (see makeConfig)
  xattrmap: null,
  securityLabel: false,
  announceSubmounts: false,
  preserveNoatime: false,
});

/** An invalid option value or combination: a usage error (exit 2), one line. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function oneOf<T extends string>(name: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) {
    throw new ConfigError(`--${name} must be one of ${allowed.join('|')}, got '${v}'`);
  }
  return v as T;
}

/** A byte count: decimal digits with an optional k/m suffix (binary units). */
export function parseSize(name: string, v: string): number {
  const m = /^(\d{1,10})([kKmM]?)$/.exec(v);
  if (!m) throw new ConfigError(`--${name} must be a size in bytes (e.g. 131072, 128k, 1m), got '${v}'`);
  const mul = m[2] === '' ? 1 : m[2]!.toLowerCase() === 'k' ? 1024 : 1024 * 1024;
  return Number(m[1]) * mul;
}

/** Most serving threads: far more than this machine's CPUs, and each costs a JS isolate (~10 MB). */
export const MAX_THREADS = 64;

/** One serving thread per CPU this process may run on (--threads auto). */
export function threadsPerCpu(): number {
  return Math.min(MAX_THREADS, Math.max(1, availableParallelism()));
}

/** --threads N|auto: auto is one per CPU this process may run on. */
function parseThreads(v: string): number {
  const n = v === 'auto' ? threadsPerCpu() : parseIntOption('threads', v);
  if (n < 1 || n > MAX_THREADS) throw new ConfigError(`--threads must be 'auto' or 1..${MAX_THREADS}, got ${v}`);
  return n;
}

/** Longest --poll-us: a tenth of a second of polling after a reply is already all CPU, no latency. */
export const MAX_POLL_US = 100_000;

function parsePollUs(v: string): number {
  const n = parseIntOption('poll-us', v);
  if (n > MAX_POLL_US) throw new ConfigError(`--poll-us must be 0..${MAX_POLL_US}, got ${v}`);
  return n;
}

export function parseIntOption(name: string, v: string): number {
  if (!/^\d{1,9}$/.test(v)) throw new ConfigError(`--${name} must be a non-negative integer, got '${v}'`);
  return Number(v);
}

/** The option values as strings/booleans, as the CLI collected them (undefined = default). */
export interface RawOptions {
  fdBudget?: string;
  reopen?: string;
  handleKeyFile?: string;
  stateFile?: string;
  cache?: string;
  writeback?: boolean;
  passthrough?: boolean;
  readonly?: boolean;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  xattr?: boolean;
  nonempty?: boolean;
  logLevel?: string;
  frontend?: string;
  maxWrite?: string;
  statsFile?: string;
  supervise?: boolean;
  threads?: string;
  pollUs?: string;
  ioUring?: string;
  translateUid?: string[];
  translateGid?: string[];
  posixAcl?: boolean;
  hostNotify?: boolean;
  sandbox?: string;
  seccomp?: string;
  modcaps?: string;
  xattrmap?: string;
  securityLabel?: boolean;
  announceSubmounts?: boolean;
  preserveNoatime?: boolean;
}

/** Build and validate a Config; throws ConfigError (a usage error) on a bad value or combination. */
export function makeConfig(sharedDir: string, mountpoint: string, o: RawOptions = {}): Config {
  const d = DEFAULT_CONFIG;
  if (sharedDir === '') throw new ConfigError('the shared directory must not be empty');
  if (mountpoint === '') throw new ConfigError('the mountpoint must not be empty');
  let fdBudget: number | 'auto' = d.fdBudget;
  if (o.fdBudget !== undefined && o.fdBudget !== 'auto') {
    fdBudget = parseIntOption('fd-budget', o.fdBudget);
    if (fdBudget < MIN_FD_BUDGET) throw new ConfigError(`--fd-budget must be 'auto' or at least ${MIN_FD_BUDGET}, got ${fdBudget}`);
  }
  const maxWrite = o.maxWrite === undefined ? d.maxWrite : parseSize('max-write', o.maxWrite);
  if (maxWrite < PAGE_SIZE || maxWrite > MAX_WRITE_LIMIT || maxWrite % PAGE_SIZE !== 0) {
    throw new ConfigError(`--max-write must be a multiple of ${PAGE_SIZE} between ${PAGE_SIZE} and ${MAX_WRITE_LIMIT}, got ${maxWrite}`);
  }
  if (o.handleKeyFile === '') throw new ConfigError('--handle-key-file must not be empty');
  if (o.stateFile === '') throw new ConfigError('--state-file must not be empty');
  if (o.stateFile !== undefined && o.handleKeyFile === undefined) {
    // records sealed under a key that dies with the process could never be verified by the next server
    throw new ConfigError('--state-file needs --handle-key-file (the next server must verify the records with the same key)');
  }

  const cfg: Config = {
    sharedDir,
    mountpoint,
    fdBudget,
    reopen: o.reopen === undefined ? d.reopen : oneOf('reopen', o.reopen, REOPEN_STRATEGIES),
    handleKeyFile: o.handleKeyFile ?? d.handleKeyFile,
    stateFile: o.stateFile ?? d.stateFile,
    cache: o.cache === undefined ? d.cache : oneOf('cache', o.cache, CACHE_POLICIES),
    writeback: o.writeback ?? d.writeback,
    passthrough: o.passthrough ?? d.passthrough,
    readonly: o.readonly ?? d.readonly,
    allowOther: o.allowOther ?? d.allowOther,
    defaultPermissions: o.defaultPermissions ?? (o.allowOther ?? d.allowOther),
    xattr: o.xattr ?? d.xattr,
    nonempty: o.nonempty ?? d.nonempty,
    logLevel: o.logLevel === undefined ? d.logLevel : oneOf('log-level', o.logLevel, LOG_LEVELS),
    frontend: o.frontend === undefined ? d.frontend : oneOf('frontend', o.frontend, FRONTENDS),
    maxWrite,
    statsFile: o.statsFile ?? d.statsFile,
    supervise: o.supervise ?? d.supervise,
    threads: o.threads === undefined ? d.threads : parseThreads(o.threads),
    threadsFollowRing: d.threadsFollowRing,
    pollUs: o.pollUs === undefined ? d.pollUs : parsePollUs(o.pollUs),
    ioUring: o.ioUring === undefined ? d.ioUring : oneOf('io-uring', o.ioUring, IO_URING_MODES),
    translateUid: o.translateUid ?? d.translateUid,
    translateGid: o.translateGid ?? d.translateGid,
    posixAcl: o.posixAcl ?? d.posixAcl,
    hostNotify: false,
    ...sandboxOptions(o),
    xattrmap: o.xattrmap ?? d.xattrmap,
    securityLabel: o.securityLabel ?? d.securityLabel,
    announceSubmounts: o.announceSubmounts ?? d.announceSubmounts,
    preserveNoatime: o.preserveNoatime ?? d.preserveNoatime,
  };
  checkIdentityOptions(cfg);
  // notifications are written to /dev/fuse by the process that serves it: not a supervised
  // worker (the supervisor holds the device), not libfuse's loop; with --cache never there is
  // nothing cached to invalidate
  const notifiable = cfg.frontend === 'raw' && !cfg.supervise;
  if (o.hostNotify && !notifiable) throw new ConfigError('--host-notify needs --frontend raw without --supervise');
  cfg.hostNotify = o.hostNotify ?? (d.hostNotify && notifiable && cfg.cache !== 'never');
  if (cfg.statsFile === '') throw new ConfigError('--stats-file must not be empty');
  if (cfg.supervise && cfg.frontend !== 'raw') throw new ConfigError('--supervise needs --frontend raw');
  if (cfg.threads > 1 && (cfg.frontend !== 'raw' || cfg.supervise)) throw new ConfigError('--threads above 1 needs --frontend raw without --supervise');
  // the rings belong to the process that holds /dev/fuse and serves it: not a supervised worker
  if (cfg.frontend !== 'raw' || cfg.supervise) {
    if (cfg.ioUring === 'on') throw new ConfigError('--io-uring on needs --frontend raw without --supervise');
    cfg.ioUring = 'off';
  }
  cfg.threadsFollowRing = o.threads === undefined && cfg.frontend === 'raw' && !cfg.supervise && cfg.ioUring !== 'off';
  // backing files are registered on the /dev/fuse fd, which only the supervisor holds
  if (cfg.supervise && cfg.passthrough) throw new ConfigError('--passthrough cannot be combined with --supervise');
  if (cfg.passthrough && cfg.frontend !== 'raw') throw new ConfigError('--passthrough needs --frontend raw');
  // the kernel refuses FUSE_PASSTHROUGH together with the writeback cache (fuse_kernel.h, 7.40)
  if (cfg.passthrough && cfg.writeback) throw new ConfigError('--passthrough cannot be combined with --writeback');
  if (cfg.sandbox === 'chroot' && (cfg.statsFile !== null || cfg.stateFile !== null)) {
    // the worker writes them, and after its chroot nothing outside the share has a name
    throw new ConfigError('--sandbox chroot cannot write --stats-file or --state-file (outside the share); use --sandbox namespace');
  }
  if (!cfg.supervise && (cfg.sandbox !== 'none' || cfg.seccomp !== 'none' || cfg.modcaps)) {
    // the worker is what is sandboxed; the supervisor keeps /dev/fuse and the mount outside it
    throw new ConfigError('--sandbox, --seccomp and --modcaps need --supervise (they apply to the worker process)');
  }
  if (cfg.xattrmap !== null) {
    if (!cfg.xattr) throw new ConfigError('--xattrmap needs extended attributes (not with --no-xattr)');
    xattrMapOf(cfg.xattrmap);
  }
  // the label is an xattr set on each new node
  if (cfg.securityLabel && !cfg.xattr) throw new ConfigError('--security-label needs extended attributes (not with --no-xattr)');
  // libfuse2's high-level API negotiates neither
  if (cfg.securityLabel && cfg.frontend !== 'raw') throw new ConfigError('--security-label needs --frontend raw');
  if (cfg.announceSubmounts && cfg.frontend !== 'raw') throw new ConfigError('--announce-submounts needs --frontend raw');
  return cfg;
}

/** --translate-uid/-gid parse and do not overlap; --posix-acl has what it needs (virtiofsd's rules). */
function checkIdentityOptions(cfg: Config): void {
  for (const [name, specs] of [['translate-uid', cfg.translateUid], ['translate-gid', cfg.translateGid]] as const) {
    try {
      buildIdMap(specs);
    } catch (e) {
      if (e instanceof IdMapError) throw new ConfigError(`--${name} ${e.message}`);
      throw e;
    }
  }
  if (!cfg.posixAcl) return;
  // ACL entries name host ids the translation would not see (virtiofsd refuses the pair too)
  if (cfg.translateUid.length > 0 || cfg.translateGid.length > 0) throw new ConfigError('--posix-acl cannot be combined with --translate-uid/--translate-gid');
  if (!cfg.xattr) throw new ConfigError('--posix-acl needs extended attributes (not with --no-xattr)');
  if (cfg.frontend !== 'raw') throw new ConfigError('--posix-acl needs --frontend raw');
}

function sandboxOptions(o: RawOptions): Pick<Config, 'sandbox' | 'seccomp' | 'modcaps'> {
  const d = DEFAULT_CONFIG;
  let modcaps: CapChange | null = d.modcaps;
  if (o.modcaps !== undefined) {
    try {
      modcaps = parseModcaps(o.modcaps);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  }
  return {
    sandbox: o.sandbox === undefined ? d.sandbox : oneOf('sandbox', o.sandbox, SANDBOX_MODES),
    seccomp: o.seccomp === undefined ? d.seccomp : oneOf('seccomp', o.seccomp, SECCOMP_MODES),
    modcaps,
  };
}

/** The key that seals file handles, and the keys rotated out of the key file but still accepted. */
export interface SealingKeys {
  key: Buffer;
  previousKeys: Buffer[];
}

/**
 * What the filesystem core and the protocol server are built from: the part of Config a supervised
 * worker receives over IPC (plain data, cloned as it is).
 */
export type CoreConfig = Pick<Config, 'fdBudget' | 'reopen' | 'cache' | 'xattr' | 'readonly' | 'writeback' | 'passthrough' | 'maxWrite' | 'logLevel' | 'statsFile' | 'stateFile'
  | 'translateUid' | 'translateGid' | 'posixAcl' | 'xattrmap' | 'securityLabel' | 'announceSubmounts' | 'preserveNoatime'
  | 'sandbox' | 'pollUs'>;

export function coreConfig(cfg: Config): CoreConfig {
  const { fdBudget, reopen, cache, xattr, readonly, writeback, passthrough, maxWrite, logLevel, statsFile, stateFile } = cfg;
  const { translateUid, translateGid, posixAcl, xattrmap, securityLabel, announceSubmounts, preserveNoatime, sandbox, pollUs } = cfg;
  return {
    fdBudget, reopen, cache, xattr, readonly, writeback, passthrough, maxWrite, logLevel, statsFile, stateFile,
    translateUid, translateGid, posixAcl, xattrmap, securityLabel, announceSubmounts, preserveNoatime, sandbox, pollUs,
  };
}

/** The parsed --xattrmap; a malformed one is a ConfigError. */
export function xattrMapOf(spec: string): XattrMap {
  try {
    return parseXattrMap(spec);
  } catch (e) {
    if (e instanceof XattrMapError) throw new ConfigError(`--xattrmap: ${e.message}`);
    throw e;
  }
}


/**
 * Options of the core filesystem. `root` is the shared directory's realpath (from preflight);
 * `wiring` is what the transport connects the core to (FUSE passthrough backing files, host-change
 * notifications, a supervisor's record stream).
 */
export function passthroughOptions(
  cfg: CoreConfig, root: string, keys: SealingKeys, log: Logger, wiring: Pick<PassthroughOptions, 'backing' | 'onRecord' | 'onHostChange' | 'sharedFds' | 'settle'> = {},
): PassthroughOptions {
  return {
    root,
    fdBudget: cfg.fdBudget,
    reopen: cfg.reopen,
    key: keys.key,
    previousKeys: keys.previousKeys,
    cache: cfg.cache,
    xattr: cfg.xattr,
    // virtiofsd creates files with the requester's credentials when it can
    creds: true,
    log,
    stateFile: cfg.stateFile,
    posixAcl: cfg.posixAcl,
    xattrmap: cfg.xattrmap === null ? null : xattrMapOf(cfg.xattrmap),
    announceSubmounts: cfg.announceSubmounts,
    preserveNoatime: cfg.preserveNoatime,
    ...wiring,
  };
}

/** Options of the raw protocol server. */
export function protocolOptions(cfg: CoreConfig): ProtocolOptions {
  return {
    maxWrite: cfg.maxWrite,
    // a read-only mount has nothing to write back
    writeback: cfg.writeback && !cfg.readonly,
    passthrough: cfg.passthrough,
    exportSupport: true,
    posixAcl: cfg.posixAcl,
    // the requesters of a /dev/fuse mount are processes of this host
    requesterGroups: processGroups,
    securityLabel: cfg.securityLabel,
    announceSubmounts: cfg.announceSubmounts,
  };
}
