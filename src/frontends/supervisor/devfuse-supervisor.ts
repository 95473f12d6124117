/**
 * `handlefs mount --supervise` on a kernel with FUSE_NOTIFY_RESEND (Linux 6.9+): the worker reads
 * and answers /dev/fuse itself, so no request passes the supervisor. The supervisor holds what
 * must outlive a worker: the mount and its own duplicate of the device fd (the connection stays
 * while a worker dies), the key, the kernel's INIT request (the worker reports it before answering
 * it), and two memfds every worker maps: the sealed inode records (record-log.ts) and the resend
 * journal (resend-journal.ts).
 *
 * - Crash (the worker dies, even by SIGKILL): a successor starts with the records and INIT, asks
 *   the kernel to resend every request read and not answered, and answers each as if done once.
 * - Upgrade (SIGHUP): the worker stops reading (requests stay queued in the kernel), answers what
 *   it read (up to 10 s), hands over its full state and exits; the successor starts reading. It
 *   also asks for a resend, so a request the old worker did not finish in time is not lost.
 * - A sandboxed worker asks for the requester's groups of an ACCESS request (its /proc cannot show
 *   a host pid): the supervisor reads /proc/PID/status, as for the forwarding supervisor.
 */
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { CoreConfig, SealingKeys } from '../../config.js';
import { processGroups } from '../../sys/proc-groups.js';
import { sys } from '../../sys/syscalls.js';
import type { SessionEnd } from '../devfuse/index.js';
import { asBuffer, asFromWorker, type FromWorker, type StartMsg } from './protocol.js';
import { SupervisedRecords } from './record-log.js';
import { JOURNAL_BYTES } from './resend-journal.js';
import { CrashBudget, askState, forkWorker, stopWorker, type Launch } from './spawn.js';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'devfuse-worker.js');
/** the worker's /dev/fuse fd: 4 (0-2 stdio, 3 Node's IPC channel); 5 is the record log (RECORD_LOG_FD) */
export const DEVICE_FD = 4;
export const JOURNAL_FD = 6;
export const DRAIN_MS = 10_000;

const closeQuietly = (fd: number): void => {
  try {
    sys.close(fd);
  } catch {
    /* closed */
  }
};

export class DevFuseSupervisor {
  private worker: ChildProcess | null = null;
  private ready = false;
  private init: Buffer | null = null;
  private readonly records = new SupervisedRecords();
  private readonly journalFd: number;
  private generation = 0;
  private readonly budget = new CrashBudget();
  private stopping = false;
  private ended = false;
  private onDrained: (() => void) | null = null;
  private onState: ((b: Buffer) => void) | null = null;
  private endWith: (e: SessionEnd) => void = () => {};
  private liveWith: () => void = () => {};
  /** the session as the CLI sees it: live once INIT is answered, done when the worker reads the end of the connection */
  readonly done: Promise<SessionEnd>;
  readonly live: Promise<void>;
  readonly counters = { workers: 0, crashes: 0, upgrades: 0 };

  constructor(
    private readonly device: number,
    private readonly cfg: CoreConfig,
    private readonly root: string,
    private readonly keys: SealingKeys,
    private readonly slog: Logger,
    private readonly onFatal: (why: string) => void,
    private readonly launch: Launch | null,
  ) {
    this.done = new Promise((r) => (this.endWith = r));
    this.live = new Promise((r) => (this.liveWith = r));
    this.journalFd = sys.memfdCreate('handlefs-resend-journal', JOURNAL_BYTES);
  }

  start(): Promise<void> {
    return this.spawn(null, false);
  }

  private spawn(state: Buffer | null, successor: boolean): Promise<void> {
    const gen = ++this.generation;
    const child = forkWorker(WORKER, [this.device, this.records.fd, this.journalFd], this.launch);
    this.worker = child;
    this.ready = false;
    this.counters.workers++;
    return new Promise<void>((resolve, reject) => {
      child.on('message', (raw) => {
        const m = asFromWorker(raw);
        if (m && gen === this.generation) this.onMessage(m, resolve, reject);
      });
      child.on('exit', (code, signal) => this.onExit(gen, code, signal, reject));
      const start: StartMsg = {
        t: 'start', cfg: this.cfg, root: this.root, key: this.keys.key, previousKeys: this.keys.previousKeys,
        state, records: state ? [] : this.records.forSuccessor(),
        init: this.init, devfuse: { successor },
      };
      child.send(start);
    });
  }

  private onMessage(m: FromWorker, resolve: () => void, reject: (e: Error) => void): void {
    switch (m.t) {
      case 'ready':
        this.ready = true;
        this.slog.info({ pid: this.worker?.pid, restored: m.restored, generation: this.generation }, 'worker ready');
        resolve();
        return;
      case 'fail':
        reject(new Error(m.message));
        return;
      case 'init':
        this.init = asBuffer(m.buf);
        this.liveWith();
        return;
      case 'recs':
        this.records.add(m.recs);
        return;
      case 'state':
        this.onState?.(asBuffer(m.blob));
        return;
      case 'drained':
        this.onDrained?.();
        return;
      case 'groups?':
        this.worker?.send({ t: 'groups', id: m.id, groups: processGroups(m.pid) });
        return;
      case 'ended':
        this.ended = true;
        this.endWith({ reason: m.reason, ...(m.code ? { code: m.code } : {}) });
        return;
      case 'rep':
        return;
    }
  }

  private onExit(gen: number, code: number | null, signal: NodeJS.Signals | null, reject: (e: Error) => void): void {
    if (gen !== this.generation) return; // replaced on purpose (upgrade)
    this.ready = false;
    reject(new Error(`worker exited (${signal ?? code}) before it was ready`));
    if (this.stopping || this.ended) return;
    this.counters.crashes++;
    this.slog.error({ code, signal }, 'the worker died; restarting it (the kernel resends the requests it had not answered)');
    const n = this.budget.crashed();
    if (n !== null) {
      this.onFatal(`the worker crashed ${n} times within a minute`);
      return;
    }
    this.spawn(null, true).catch((e: unknown) => this.onFatal(`cannot restart the worker: ${(e as Error).message}`));
  }

  /** Upgrade: the worker stops reading and answers what it read, hands over its state and exits; a successor takes over. */
  async upgrade(): Promise<void> {
    const old = this.worker;
    if (!this.ready || !old || this.stopping) return;
    this.ready = false;
    this.counters.upgrades++;
    this.slog.info({ pid: old.pid }, 'upgrade: draining the worker');
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, DRAIN_MS + 1000);
      this.onDrained = () => {
        clearTimeout(t);
        resolve();
      };
      old.send({ t: 'drain' });
    });
    this.onDrained = null;
    const state = await askState(old, (to) => (this.onState = to));
    this.generation++; // its exit is no crash
    await stopWorker(old);
    if (this.stopping) return;
    this.records.upgraded(state);
    await this.spawn(state, true);
    this.slog.info({ pid: this.worker?.pid, stateBytes: state.length }, 'upgrade done');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.worker) await stopWorker(this.worker);
    this.records.close();
    closeQuietly(this.journalFd);
  }

  /** For the supervisor's stats file; `resend`: this mode (the forwarding supervisor has none). */
  counterValues(): { workerPid: number | undefined; generation: number; resend: true } & DevFuseSupervisor['counters'] {
    return { workerPid: this.worker?.pid, generation: this.generation, resend: true, ...this.counters };
  }
}
