/**
 * Mounted-test fixture (go-fuse newTestCase + t.Cleanup; libfuse's runner "kills ... pass or
 * fail"): `withMount(opts, fn)` makes orig/ and mnt/ in a fresh temp dir, starts the real CLI
 * (dist/cli/main.js) in a child process, waits for its ready signal, runs fn, and ALWAYS cleans
 * up: unmount, abort the connection if unmounting hangs, kill the child by its own pid, remove the
 * temp dir (never while something is still mounted in it: rm would walk into the mount).
 * `useMount(opts)` does the same for a whole describe block. Clients run with ./child.ts; what is
 * mounted where comes from ./mounts.ts.
 *
 * The server runs in a child process because touching a mount from the server's own event loop
 * deadlocks. The test process itself may use node:fs on the mount (it is a separate process), but
 * every test needs a timeout: a server that stops answering hangs whoever touches the mount.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, beforeAll, expect } from 'vitest';
import { killPid, run, waitExit, type RunResult } from './child.js';
import { forceUnmount, mountAt, mountDirs } from './mounts.js';
import { uringParam, withUringParam } from './uring.js';
import { READY_ENV, waitReady } from '../../tools/lib/ready.js';
import { CLI, REPO } from '../../tools/lib/repo.js';

export { REPO, CLI };

export interface MountOptions {
  /** extra CLI arguments after `mount orig mnt`; '{dir}' is replaced by the test's temp dir (beside orig/ and mnt/) */
  args?: string[];
  /** a command the server runs under, e.g. ['setpriv', '--reuid=65534', ..., '--'] */
  wrap?: string[];
  /** fill orig/ before mounting */
  setup?: (orig: string) => void | Promise<void>;
  /** extra environment for the server */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** exactly `args`, without what the project's environment adds (HANDLEFS_TEST_THREADS, ...): a test of the defaults */
  asGiven?: boolean;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface MountContext {
  dir: string;
  orig: string;
  mnt: string;
  /** the server's pid */
  pid: number;
  /** everything the server wrote to stdout/stderr so far */
  serverLog: () => string;
  /** send `signal` to the server and wait for it to exit (SIGKILL after timeoutMs) */
  stop: (signal?: NodeJS.Signals, timeoutMs?: number) => Promise<ExitStatus>;
  /** the exit status once the server has exited, else null */
  exited: () => ExitStatus | null;
  /** close our ends of the server's stdout/stderr pipes (its writes then fail with EPIPE) */
  closeOutput: () => void;
}

/**
 * HANDLEFS_TEST_SANDBOX=kill|log|none runs every raw mount that can be supervised (not --frontend
 * fuse-native, not --passthrough) as `--supervise --sandbox namespace --seccomp <that>`
 * (HANDLEFS_TEST_SANDBOX_MODE=chroot: `--sandbox chroot`): the
 * mounted suite then tests the sandboxed worker. HANDLEFS_TEST_THREADS=N adds `--threads N` to every
 * raw mount that is not supervised: the mounted suite then tests several serving threads; with
 * HANDLEFS_TEST_IO_URING=on as well, those servers also get `--io-uring on`, and the kernel's
 * switch is turned on around each start (test/helpers/uring.ts). HANDLEFS_TEST_WRAP="cmd args" runs every server under cmd (e.g.
 * strace, for scripts/seccomp-measure).
 */
function environmentArgs(args: readonly string[]): string[] {
  const seccomp = process.env.HANDLEFS_TEST_SANDBOX;
  const threads = process.env.HANDLEFS_TEST_THREADS;
  const fuseNative = args.some((a, i) => a === '--frontend=fuse-native' || (a === '--frontend' && args[i + 1] === 'fuse-native'));
  if (!seccomp) {
    if (!threads || fuseNative || args.includes('--supervise') || args.includes('--threads')) return [];
    const ring = testRing && !args.some((a) => a.startsWith('--io-uring')) ? ['--io-uring', 'on'] : [];
    return ['--threads', threads, ...ring];
  }
  if (fuseNative || args.includes('--passthrough') || args.includes('--threads')) return [];
  return ['--supervise', '--sandbox', process.env.HANDLEFS_TEST_SANDBOX_MODE ?? 'namespace', '--seccomp', seccomp];
}
/** HANDLEFS_TEST_IO_URING=on, where this kernel has FUSE over io_uring (else the threads alone are tested). */
const testRing = process.env.HANDLEFS_TEST_IO_URING === 'on' && uringParam() !== null;

/**
 * Under HANDLEFS_TEST_SANDBOX every server this helper starts is supervised and sandboxed, so a
 * test of what only an unsupervised server does (SIGHUP ignored, --host-notify, which writes to
 * /dev/fuse from the core's process) or of a non-root server does not apply: it is skipped with
 * `sandboxed(why)` in its title.
 */
export const underSandbox = (process.env.HANDLEFS_TEST_SANDBOX ?? '') !== '';
export const sandboxed = (why: string): string => (underSandbox ? ` (skipped under HANDLEFS_TEST_SANDBOX: ${why})` : '');
const environmentWrap = (): string[] => process.env.HANDLEFS_TEST_WRAP?.split(' ').filter((w) => w !== '') ?? [];

/** Why mounted tests cannot run here, or null. */
export function mountSkipReason(): string | null {
  if (process.platform !== 'linux') return 'FUSE mounts need Linux';
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'mounted tests run as root (mount(2))';
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse is missing';
  if (!fs.existsSync(CLI)) return `${CLI} is missing: build with npx tsc -p tsconfig.json (scripts/setup)`;
  return null;
}

/** Run the CLI to completion (for usage and set-up errors); HANDLEFS_* env may be added. */
export function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], { timeoutMs, env: { ...process.env, ...env } });
}

export interface MountHandle extends MountContext {
  /** unmount, end the server, remove the temp dir; safe to call twice */
  cleanup: () => Promise<void>;
  /**
   * End this server and mount a new one on the same orig/ and mnt/ with the same arguments:
   * 'unmount' unmounts cleanly first; 'kill' SIGKILLs the server (no clean stop of any kind), then
   * unmounts the dead mount. `args` replaces the CLI arguments from then on. `pid`, `serverLog`
   * and `exited` then speak of the new server.
   */
  restart: (how: 'unmount' | 'kill', args?: string[]) => Promise<void>;
}

/**
 * Start a mount and hand it over; prefer withMount or useMount, which cannot forget the cleanup.
 * On a failed start everything is already cleaned up.
 */
/**
 * Servers this process started and that have not exited, with their mountpoints. A test that
 * times out can leave its cleanup unrun when the test process ends first (vitest does not wait for
 * it): at exit, each is killed by its pid, its mount detached and its directory removed, so that
 * no server or mount outlives the test process.
 */
const running = new Map<ChildProcess, { mnt: string; dir: string }>();
let exitHookSet = false;
function trackServer(c: ChildProcess, mnt: string, dir: string): void {
  running.set(c, { mnt, dir });
  c.once('exit', () => running.delete(c));
  if (exitHookSet) return;
  exitHookSet = true;
  const reap = (): void => {
    for (const [child, { mnt, dir }] of running) {
      if (child.pid) killPid(child.pid, 'SIGKILL');
      const u = spawnSync('umount', ['-l', mnt], { stdio: 'ignore', timeout: 5000 });
      if (u.status === 0 || !mountAt(mnt)) fs.rmSync(dir, { recursive: true, force: true });
    }
    running.clear();
  };
  process.once('exit', reap);
  // the test runner ends its worker processes with a signal, which skips 'exit'
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      reap();
      process.exit(128 + (sig === 'SIGTERM' ? 15 : 2));
    });
  }
}

export async function startMount(opts: MountOptions = {}): Promise<MountHandle> {
  const { dir, orig, mnt } = mountDirs('handlefs-mnt-');
  let child: ChildProcess | null = null;
  let status: ExitStatus | null = null;
  let log = '';
  let cleaned = false;

  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await forceUnmount(mnt);
    if (child && child.pid) {
      const c = child;
      // after the unmount the server ends by itself (ENODEV); otherwise SIGTERM, then SIGKILL
      if (!(await waitExit(c, 5000))) {
        killPid(c.pid!, 'SIGTERM');
        if (!(await waitExit(c, 3000))) {
          killPid(c.pid!, 'SIGKILL');
          await waitExit(c, 3000);
        }
      }
    }
    // a SIGKILLed server leaves a dead mount (ENOTCONN) behind
    await forceUnmount(mnt);
    if (mountAt(mnt)) throw new Error(`could not unmount ${mnt}; left ${dir} in place`);
    fs.rmSync(dir, { recursive: true, force: true });
  };

  let args = opts.args ?? [];
  const added = (): string[] => (opts.asGiven ? [] : environmentArgs(args));
  const argv = (): string[] => [...environmentWrap(), ...(opts.wrap ?? []), process.execPath, CLI, 'mount', orig, mnt,
    ...args.map((a) => a.replaceAll('{dir}', dir)), ...added()];
  const start = async (): Promise<ChildProcess> => {
    const cmd = argv();
    status = null;
    log = '';
    const c = spawn(cmd[0]!, cmd.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env, ...READY_ENV },
    });
    child = c;
    trackServer(c, mnt, dir);
    c.on('exit', (code, signal) => (status = { code, signal }));
    c.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    await waitReady(c, opts.readyTimeoutMs ?? 15_000, () => log);
    return c;
  };
  // the kernel offers io_uring at INIT only while its switch is on: on for the start, then put
  // back (only for the --io-uring this helper added: a test that passes its own sets the switch itself)
  const launch = async (): Promise<ChildProcess> =>
    added().includes('--io-uring') ? withUringParam('Y', start) : start();

  try {
    await opts.setup?.(orig);
    let c = await launch();
    const handle: MountHandle = {
      dir,
      orig,
      mnt,
      pid: c.pid!,
      serverLog: () => log,
      exited: () => status,
      closeOutput: () => {
        c.stdout!.destroy();
        c.stderr!.destroy();
      },
      stop: async (signal = 'SIGTERM', timeoutMs = 10_000) => {
        if (!status) killPid(c.pid!, signal);
        if (!(await waitExit(c, timeoutMs))) {
          killPid(c.pid!, 'SIGKILL');
          await waitExit(c, 5000);
        }
        return status ?? { code: null, signal: null };
      },
      restart: async (how, newArgs) => {
        if (how === 'kill') {
          killPid(c.pid!, 'SIGKILL');
          await waitExit(c, 5000);
        }
        await forceUnmount(mnt);
        if (!(await waitExit(c, 5000))) {
          killPid(c.pid!, 'SIGKILL');
          await waitExit(c, 3000);
        }
        if (mountAt(mnt)) throw new Error(`could not unmount ${mnt} to restart the server`);
        if (newArgs) args = newArgs;
        c = await launch();
        handle.pid = c.pid!;
      },
      cleanup,
    };
    return handle;
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Mount, run fn, and always clean up (unmount, end the server by pid, remove the temp dir). */
export async function withMount<T>(opts: MountOptions, fn: (ctx: MountContext) => Promise<T>): Promise<T> {
  const m = await startMount(opts);
  try {
    return await fn(m);
  } finally {
    await m.cleanup();
  }
}

/**
 * One mount for a whole describe block: started in beforeAll, cleaned up in afterAll, where the
 * server must have ended by itself with status 0 (the cleanup unmounts it with umount(8)). Returns
 * the handle's getter (there is a handle once beforeAll has run).
 */
export function useMount(opts: MountOptions): () => MountHandle {
  let m: MountHandle | undefined;
  beforeAll(async () => {
    m = await startMount(opts);
  }, 60_000);
  afterAll(async () => {
    if (!m) return;
    await m.cleanup();
    expect(m.exited()).toEqual({ code: 0, signal: null });
  }, 60_000);
  return () => {
    if (!m) throw new Error('no mount: its beforeAll has not run or failed');
    return m;
  };
}
