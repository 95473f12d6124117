/** Starting a supervised worker process, and the crash budget every supervisor applies to it. */
import { fork, type ChildProcess } from 'node:child_process';

/** A program that starts Node for the worker (the sandbox launcher), its arguments before Node's own, and the environment. */
export interface Launch {
  execPath: string;
  head: string[];
  env: NodeJS.ProcessEnv;
}

/** Fork `script` with the IPC channel on fd 3 and `fds` from fd 4 on; launched by `launch`, or Node directly. */
export function forkWorker(script: string, fds: readonly number[], launch: Launch | null): ChildProcess {
  return fork(script, [], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds],
    execArgv: [...(launch?.head ?? []), ...process.execArgv.filter((a) => !a.startsWith('--cpu-prof'))],
    ...(launch ? { execPath: launch.execPath, env: launch.env } : {}),
  });
}

const MAX_CRASHES_PER_MIN = 5;

/** Counts crashes; `crashed()` says whether one more is too many (more than 5 within a minute). */
export class CrashBudget {
  private times: number[] = [];

  crashed(): number | null {
    const now = Date.now();
    this.times = this.times.filter((t) => now - t < 60_000);
    this.times.push(now);
    return this.times.length > MAX_CRASHES_PER_MIN ? this.times.length : null;
  }
}

/** Ask `w` for its full sealed state; `route` points the supervisor's 'state' message handler at the answer (null once it came). */
export async function askState(w: ChildProcess, route: (to: ((b: Buffer) => void) | null) => void): Promise<Buffer> {
  const state = await new Promise<Buffer>((resolve) => {
    route(resolve);
    w.send({ t: 'state' }, () => {});
  });
  route(null);
  return state;
}

/** Tell `w` to stop and wait for its exit (SIGKILL after 5 s). */
export async function stopWorker(w: ChildProcess): Promise<void> {
  if (w.exitCode !== null || w.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => w.once('exit', () => resolve()));
  w.send({ t: 'stop' }, () => {});
  await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
  if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
}
