/**
 * Child processes with a deadline. run() collects stdout and stderr and settles at 'close' (every
 * byte read), not at 'exit', which Node may report before the last output has arrived.
 */
import { spawn } from 'node:child_process';

export interface RunResult {
  stdout: string;
  stderr: string;
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export interface RunOptions {
  /** SIGKILL (by pid) after this long; default 10 s */
  timeoutMs?: number;
  /** written to the child's stdin, which is then closed */
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Send `sig` to `pid`; a process that is already gone is no error. */
export function killPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** Run `cmd` in another process until it ends or `timeoutMs` passes; never rejects. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((settle) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.stdin.on('error', () => {});
    c.stdin.end(opts.input ?? '');
    const t = setTimeout(() => {
      timedOut = true;
      if (c.pid) killPid(c.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 10_000);
    c.on('error', (e) => {
      clearTimeout(t);
      settle({ stdout, stderr: stderr + String(e), status: null, signal: null, timedOut });
    });
    c.on('close', (status, signal) => {
      clearTimeout(t);
      settle({ stdout, stderr, status, signal, timedOut });
    });
  });
}
