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
