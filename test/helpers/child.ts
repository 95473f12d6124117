/**
 * Running other programs from tests, always with a timeout (a client blocked on a hung mount must
 * not hang the test run): run() in another process, awaited; runSync() for set-up steps outside
 * any mount; output() when anything but status 0 is an error. A child that keeps running (a
 * server, a client left blocked, a racing host process) is started with start() and ended by its
 * own pid (waitExit, killPid).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

import { run, killPid, type RunOptions, type RunResult } from '../../tools/lib/run.js';

export { run, killPid, type RunOptions, type RunResult };

/** run(), but the command must exit 0: its stdout, else an Error with what it said. */
export async function output(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')}: status ${r.status} signal ${r.signal} timedOut ${r.timedOut}\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/** Run a shell script (sh -c) as a client of a mount, in another process, with a timeout. */
export function runClient(script: string, args: readonly string[] = [], timeoutMs = 10_000): Promise<RunResult> {
  return run('sh', ['-c', script, 'client', ...args], { timeoutMs });
}

/**
 * The synchronous run, for set-up and probes that touch no mount (it blocks the test process, so
 * nothing it does may need this process to answer). Stdin is empty.
 */
export function runSync(cmd: string, args: readonly string[], opts: Omit<RunOptions, 'input'> = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 10_000, env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  return { stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error && !timedOut ? String(r.error) : ''}`, status: r.status, signal: r.signal, timedOut };
}

/** Wait up to `ms` for a started child to exit; whether it did. */
export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((r) => {
    const t = setTimeout(() => r(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      r(true);
    });
  });
}

export interface Started {
  child: ChildProcess;
  /** what it wrote so far */
  stdout: () => string;
  stderr: () => string;
  /** SIGKILL it (by pid) unless it has exited, and wait for the exit */
  kill: () => Promise<void>;
}

/** Start a command that keeps running; its stdin is a pipe left open (child.stdin), its output is kept. */
export function start(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Started {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  child.stdin!.on('error', () => {});
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.on('error', (e) => (err += String(e)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
      killPid(child.pid, 'SIGKILL');
      await waitExit(child, 5000);
    },
  };
}
