/**
 * The life of a mounted server, one for every way of serving (raw /dev/fuse, supervised, fuse-native):
 * the logger, set-up failures and exit codes, signals, an uncaught exception, readiness and the
 * stats file. What differs between them is behind `Served`.
 *
 * - SIGINT, SIGTERM: unmount; a busy mount is detached lazily and the files still open on it are
 *   served until they are closed. A second one stops at once. A signal that arrives while the
 *   server is being set up takes effect once it is (a mount is never left without its server); a
 *   second one then exits at once.
 * - SIGHUP: upgrade without unmounting. A supervised server starts a new worker; any other logs
 *   that it has nothing to upgrade and goes on serving. SIGHUP never unmounts.
 * - An uncaught exception (or unhandled rejection): one line to the operator, then unmount (lazily
 *   if busy), abort the connection if possible, and exit 1; never a dead mount left behind.
 * - Readiness: once the mount serves requests, "mounted ..." is logged (info) and, with
 *   HANDLEFS_READY_FD=N, "ready\n" is written to fd N and the fd closed.
 * - Exit codes: 0 after a clean unmount, 1 when setting up or serving fails, 2 on a usage error.
 */
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { makeLogger } from '../log.js';
import { startStats } from '../stats.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** How long an uncaught exception may spend unmounting before the process exits anyway. */
const CRASH_MS = 5000;

const noop = (): void => {};

/** A server that has mounted: what the lifecycle needs of it. */
export interface Served {
  /** Resolves once the mount serves requests, with what is mounted ("ROOT on MNT (...)"). */
  readonly live: Promise<string>;
  /** Resolves with the exit code once the server has ended (unmounted, failed, or stopped at once). */
  readonly ended: Promise<number>;
  /**
   * Unmount (`failure`: the exit code is 1). Called again while stopping: stop at once. `now`:
   * requests already read can never be answered (a serving thread died), so a mount that cannot
   * be unmounted or aborted is not served on: the server stops at once, which ends the connection.
   */
  stop(why: string, failure?: boolean, now?: boolean): void;
  /** SIGHUP; absent when there is nothing to upgrade. */
  upgrade?(): void;
  /** After an uncaught exception: unmount and abort, as far as possible. */
  crash(): Promise<void>;
  /** Once ended: close and destroy what is left (device fd, filesystem core, worker). */
  release(): Promise<void>;
  /** --stats-file: where, and the counters to write there. */
  readonly stats: { file: string | null; counters: () => object };
}

export interface LifecycleOptions {
  /** Ends the process after an uncaught exception (default process.exit). */
  exit?: (code: number) => void;
  /**
   * The process exits once runServer resolves (the CLI): SIGINT, SIGTERM and SIGHUP stay caught,
   * and do nothing, from the end of serving to the exit. Without this, a signal that arrives while the
   * process exits on its own (a VMM that disconnected; a mount unmounted from outside) ends it
   * by the signal's default action, not with the server's exit code.
   */
  exiting?: boolean;
}

/** SIGINT/SIGTERM/SIGHUP after the server ended, in a process about to exit: already stopping. */
const lateSignal = (): void => {};

/** One line to stderr, prefixed; EPIPE on a closed stderr is ignored. */
export function say(line: string): void {
  try {
    fs.writeSync(2, `handlefs: ${line}\n`);
  } catch {
    /* stderr closed */
  }
}

const firstLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

/** HANDLEFS_READY_FD=N: write "ready\n" to fd N and close it (the mounted tests and scripts wait on it). */
function signalReady(): void {
  const v = process.env.HANDLEFS_READY_FD;
  if (!v || !/^\d+$/.test(v)) return;
  const fd = Number(v);
  try {
    fs.writeSync(fd, 'ready\n');
  } catch {
    /* nobody is listening: EPIPE/EBADF */
  }
  try {
    fs.closeSync(fd);
  } catch {
    /* not open */
  }
}

/**
 * Set up with `start` and serve until the server ends; resolves with the exit code. A failure of
 * `start` is a set-up error: its first line goes to stderr and the code is 1 (`start` itself undoes
 * whatever it had done, a mount included).
 */
export async function runServer(cfg: Config, start: (log: Logger) => Promise<Served>, opts: LifecycleOptions = {}): Promise<number> {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const log = makeLogger(cfg.logLevel);
  let served: Served | null = null;
  let pendingStop: string | null = null;
  let crashed = false;

  const onStop = (sig: NodeJS.Signals): void => {
    const why = `received ${sig}`;
    if (served) served.stop(why);
    else if (pendingStop === null) {
      log.info(`${why} while setting up: stopping once set up`);
      pendingStop = why;
    } else exit(EXIT_FAILURE); // a second signal during set-up: at once
  };
  const onHangup = (): void => {
    if (served?.upgrade) served.upgrade();
    else log.warn('received SIGHUP: only a supervised server (--supervise) upgrades; still serving');
  };
  const onCrash = (e: unknown): void => {
    if (crashed) return;
    crashed = true;
    log.fatal({ err: e }, 'uncaught exception; unmounting');
    say(`internal error: ${firstLine(e)}`);
    const cleanup = served ? served.crash().catch(noop) : Promise.resolve();
    void Promise.race([cleanup, new Promise((r) => setTimeout(r, CRASH_MS).unref())]).then(() => exit(EXIT_FAILURE));
  };
  const signals = { SIGINT: onStop, SIGTERM: onStop, SIGHUP: onHangup } as const;
  for (const [sig, fn] of Object.entries(signals)) process.on(sig, fn);
  process.on('uncaughtException', onCrash);
  try {
    try {
      served = await start(log);
    } catch (e) {
      say(firstLine(e));
      log.debug({ err: e }, 'set-up failed');
      return EXIT_FAILURE;
    }
    const s = served;
    const stats = startStats(s.stats.file, s.stats.counters, log);
    s.live.then((what) => {
      log.info(`mounted ${what}`);
      signalReady();
    }, noop);
    if (pendingStop !== null) s.stop(pendingStop);
    const code = await s.ended;
    stats.stop();
    await s.release().catch((e: unknown) => log.warn({ err: e }, 'releasing the server failed'));
    return code;
  } finally {
    if (opts.exiting) for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, lateSignal);
    for (const [sig, fn] of Object.entries(signals)) process.off(sig, fn);
    process.off('uncaughtException', onCrash);
  }
}
