/**
 * How a supervised worker is started inside the sandbox: the command line of the launcher
 * (native/build/Release/handlefs-sandbox, built with the addon), which makes the namespaces and the
 * new root, drops capabilities and installs the seccomp filter in a single-threaded process, then
 * execs Node. Inside the new root the worker sees, at the same paths as on the host (so the share's
 * realpath and /proc/self/fd's links read the same inside and out): Node and its libraries and
 * the handlefs tree read-only, the shared directory and the directories of --stats-file and
 * --state-file read-write, /dev/null, /dev/zero, /dev/random, /dev/urandom, and its own /proc.
 * Nothing else of the host: not /etc, not /dev/fuse, not the mountpoint.
 */
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SECCOMP_ALLOW } from './seccomp-allow.js';

export type SandboxMode = 'namespace' | 'chroot' | 'none';
export type SeccompMode = 'kill' | 'log' | 'none';

export interface SandboxPlan {
  sandbox: SandboxMode;
  seccomp: SeccompMode;
  /** capability numbers the worker keeps; null: all of the caller's */
  caps: number[] | null;
}

/** The handlefs tree (dist/, node_modules/, native/build/): this file is src/sandbox or dist/sandbox. */
const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LAUNCHER = join(PACKAGE_ROOT, 'native', 'build', 'Release', 'handlefs-sandbox');

/** What the worker's own chroot (--sandbox chroot, src/sys/syscalls.ts enterChroot) takes: the chroot, the cwd moves, dropping its capability. */
const CHROOT_SYSCALLS = ['chroot', 'fchdir', 'capset'];

/** The system's programs and libraries (merged-/usr symlinks are copied as symlinks) and the loader's cache. */
const SYSTEM = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc/ld.so.cache'];
const DEVICES = ['/dev/null', '/dev/zero', '/dev/random', '/dev/urandom'];

const exists = (p: string): boolean => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/** How fork() starts a worker: `execPath` with `head` before Node's own arguments, in `env`. */
export interface WorkerLaunch {
  execPath: string;
  head: string[];
  env: NodeJS.ProcessEnv;
}

export function sandboxed(plan: SandboxPlan): boolean {
  return plan.sandbox !== 'none' || plan.seccomp !== 'none' || plan.caps !== null;
}

/**
 * fork()'s execPath and the head of its execArgv for a worker under `plan` (Node's own arguments
 * follow, then the worker's module). `share` is the shared directory's realpath; `files` are the
 * absolute paths the worker writes outside it (stats and state files).
 */
export function launchCommand(plan: SandboxPlan, share: string, files: readonly string[]): WorkerLaunch {
  const head: string[] = [];
  if (plan.sandbox === 'namespace') {
    head.push('--namespace');
    const node = realpathSync(process.execPath);
    const ro = [...SYSTEM.filter(exists), realpathSync(PACKAGE_ROOT)];
    // a Node installed outside /usr (e.g. /opt/node/bin/node): its whole prefix
    if (!ro.some((d) => node.startsWith(d + '/'))) ro.push(dirname(dirname(node)));
    const rw = [share, ...files.map((f) => realpathSync(dirname(f))), ...DEVICES.filter(existsSync)];
    for (const p of ro) head.push('--ro', p);
    for (const p of new Set(rw)) head.push('--rw', p);
  }
  if (plan.caps !== null) head.push('--caps', plan.caps.join(','));
  if (plan.seccomp !== 'none') head.push('--seccomp', plan.seccomp, '--allow', [...SECCOMP_ALLOW, ...(plan.sandbox === 'chroot' ? CHROOT_SYSCALLS : [])].join(','));
  head.push('--', realpathSync(process.execPath));
  // a file of extra CA certificates is not in the new root (Node would warn at every start)
  const { NODE_EXTRA_CA_CERTS: _certs, ...env } = process.env;
  return { execPath: LAUNCHER, head, env: plan.sandbox === 'namespace' ? env : process.env };
}
