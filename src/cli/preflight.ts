/**
 * Set-up checks on the host before anything is opened or mounted (virtiofsd checks the shared
 * directory first). Each failure is a SetupError with one operator line and, where there is one,
 * the remedy; the CLI exits 1 with it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { resolve, sep } from 'node:path';
import { threadsPerCpu, type Config } from '../config.js';
import { LAUNCHER } from '../sandbox/launcher.js';

export class SetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SetupError';
  }
}

export interface Preflight {
  /** realpath of the shared directory */
  root: string;
  /** realpath of the mountpoint */
  mountpoint: string;
}

/** The FUSE device (the devfuse frontend's DEV_FUSE; not imported from there: that loads the addon). */
const DEV_FUSE = '/dev/fuse';

const code = (e: unknown): string => (e as { code?: string }).code ?? 'EIO';

function realDir(what: string, path: string, missingHint: string): string {
  let real: string;
  try {
    real = fs.realpathSync(path);
  } catch (e) {
    const c = code(e);
    if (c === 'ENOENT') throw new SetupError(`${what} ${path} does not exist${missingHint}`);
    if (c === 'ENOTCONN') throw new SetupError(`${what} ${path} is a dead FUSE mount; run umount -l ${path}`);
    throw new SetupError(`${what} ${path} is not accessible (${c})`);
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(real);
  } catch (e) {
    throw new SetupError(`${what} ${path} is not accessible (${code(e)})`);
  }
  if (!st.isDirectory()) throw new SetupError(`${what} ${path} is not a directory`);
  return real;
}

/** Whether `inner` is `outer` or lies beneath it (both realpaths). */
export function isWithin(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);
}

/** The shared directory's realpath, checked (a SetupError says what is wrong). */
export function sharedDirectory(cfg: Config): string {
  return realDir('shared directory', cfg.sharedDir, '');
}

export function preflight(cfg: Config): Preflight {
  const root = sharedDirectory(cfg);
  const mnt = realDir('mountpoint', cfg.mountpoint, `; create it first (mkdir -p ${resolve(cfg.mountpoint)})`);
  if (isWithin(mnt, root)) {
    throw new SetupError(`mountpoint ${cfg.mountpoint} is inside the shared directory ${cfg.sharedDir}; choose a mountpoint outside it`);
  }
  if (!cfg.nonempty) {
    let entries: string[];
    try {
      entries = fs.readdirSync(mnt);
    } catch (e) {
      throw new SetupError(`mountpoint ${cfg.mountpoint} cannot be listed (${code(e)})`);
    }
    if (entries.length > 0) throw new SetupError(`mountpoint ${cfg.mountpoint} is not empty; empty it or pass --nonempty`);
  }
  if (!fs.existsSync(DEV_FUSE)) {
    throw new SetupError(`${DEV_FUSE} does not exist; load the fuse module (modprobe fuse) or, in a container, pass --device /dev/fuse`);
  }
  const root0 = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root0) {
    const r = spawnSync('fusermount3', ['-V'], { stdio: 'ignore', timeout: 5000 });
    if (r.error || r.status !== 0) {
      throw new SetupError('not running as root and fusermount3 is not installed; run as root or install fuse3 (apt-get install fuse3)');
    }
  }
  if (cfg.sandbox !== 'none' || cfg.seccomp !== 'none' || cfg.modcaps) {
    if (!fs.existsSync(LAUNCHER)) throw new SetupError(`the sandbox launcher ${LAUNCHER} is missing; build it with scripts/setup (needs libseccomp-dev)`);
    if (cfg.sandbox !== 'none' && !root0) throw new SetupError(`--sandbox ${cfg.sandbox} needs root (${cfg.sandbox === 'namespace' ? 'new namespaces and mounts' : 'chroot'}); use --sandbox none`);
  }
  if (cfg.ioUring === 'on') checkIoUring();
  return { root, mountpoint: mnt };
}

/** The kernel's switch for FUSE over io_uring (root only, off by default). */
export const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

/** Whether root switched FUSE over io_uring on (the kernel then offers it at INIT); null: this kernel has no such switch. */
export function uringSwitch(): boolean | null {
  try {
    return fs.readFileSync(ENABLE_URING, 'utf8').trim() === 'Y';
  } catch {
    return null;
  }
}

/** --io-uring on: the kernel must offer FUSE over io_uring at INIT. */
function checkIoUring(): void {
  const on = uringSwitch();
  if (on === null) throw new SetupError(`--io-uring on: this kernel has no FUSE over io_uring (${ENABLE_URING} is missing: it needs Linux 6.14 or later with CONFIG_FUSE_IO_URING)`);
  if (!on) throw new SetupError(`--io-uring on: FUSE over io_uring is off in the kernel; as root: echo Y > ${ENABLE_URING}`);
}

/**
 * The serving threads to start. Without --threads: one per CPU where root switched FUSE over
 * io_uring on and this process can make a ring (`ringUnavailable` says why not), one elsewhere.
 * Measured (README, "Why the default follows the kernel's io_uring switch"): over the rings the
 * threads were 2.0-2.8x one thread on random reads and, depending on the day, 0.6-2.0x on
 * metadata; on /dev/fuse clones, which give no request to the thread of its caller's CPU, one
 * thread polling after each reply was faster on metadata and sequential I/O. And --io-uring auto
 * takes the rings only with more than one thread: a root who switched them on wants them.
 */
export function servingThreads(cfg: Config, ringUnavailable: () => string | null, switchedOn: () => boolean | null = uringSwitch): number {
  if (!cfg.threadsFollowRing) return cfg.threads;
  const n = threadsPerCpu();
  return n > 1 && switchedOn() === true && ringUnavailable() === null ? n : cfg.threads;
}
