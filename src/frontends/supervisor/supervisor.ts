/**
 * Restart without unmount (`handlefs mount --supervise`): the request handler of the /dev/fuse
 * session when the filesystem runs in a worker process.
 *
 * The supervisor process holds what must outlive a worker: the /dev/fuse fd and the mount (the CLI
 * mounts and runs the session, as for a plain server), the sealing key, the kernel's INIT request,
 * and the sealed inode records the worker streams to it. This handler forwards each request's
 * bytes to the worker, which runs the filesystem and the protocol server and answers reply bytes
 * (the protocol server is transport-agnostic, so this is one more transport). It keeps no
 * filesystem logic.
 *
 * - Upgrade (the CLI calls upgrade() on SIGHUP): new requests are queued; requests in flight are
 *   allowed to finish (bounded); the old worker hands over its full sealed state and exits; a new
 *   worker (the code on disk now) starts with that state and a replay of INIT; the queue is
 *   released to it.
 * - Crash (the worker dies): every request it had not answered is answered EIO (never left
 *   hanging); a new worker starts with the records streamed so far. Restarts are rate limited:
 *   more than 5 crashes within a minute are fatal (onFatal: the CLI unmounts and exits 1).
 * - Node ids and client file handles survive both: the successor verifies each sealed record (same
 *   key) and brings inodes back lazily, under their old node ids. Open files (fh) pass to the
 *   successor at an upgrade (in the state); after a crash, requests on a dead worker's fh get EBADF.
 */
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { CoreConfig, SealingKeys } from '../../config.js';
import { E } from '../../errors.js';
import { InHeader, requestBufferSize } from '../../fuse/abi.js';
import { encodeError } from '../../fuse/codec.js';
import { Op } from '../../fuse/opcodes.js';
import type { RequestHandler } from '../devfuse/index.js';
import { processGroups } from '../../sys/proc-groups.js';
import { CrashBudget, askState, forkWorker, stopWorker, type Launch } from './spawn.js';
import { asBuffer, asFromWorker, noReply, type FromWorker, type ReqMsg, type StartMsg, type ToWorker } from './protocol.js';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker.js');
const DRAIN_MS = 10_000;

interface Pending {
  resolve: (b: Buffer | null) => void;
  unique: bigint;
  opcode: number;
}

export class Supervisor implements RequestHandler {
  private worker: ChildProcess | null = null;
  private ready = false;
  private paused = false;
  private queue: ReqMsg[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private init: Buffer | null = null;
  private initId = -1;
  /** set once the worker answered INIT (the session reports the mount live then) */
  negotiated: object | null = null;
  /** latest sealed record per streamed blob, in arrival order (a successor replays them all) */
  private readonly records: Buffer[] = [];
  private recordBytes = 0;
  private drained: (() => void) | null = null;
  private onState: ((b: Buffer) => void) | null = null;
  private generation = 0;
  private readonly budget = new CrashBudget();
  private stopping = false;

  /**
   * `onFatal`: the worker cannot be kept running (it crashes too often, or cannot restart).
   * `launch`: a program that starts Node for the worker (the sandbox launcher), its arguments
   * before Node's own and the worker's environment; null: Node directly.
   */
  constructor(
    private readonly cfg: CoreConfig,
    private readonly root: string,
    private readonly keys: SealingKeys,
    private readonly log: Logger,
    private readonly onFatal: (why: string) => void,
    private readonly launch: Launch | null = null,
  ) {}

  bufferSize(): number {
    return requestBufferSize(this.cfg.maxWrite);
  }

  handle(req: Buffer): Promise<Buffer | null> {
    const opcode = req.length >= 8 ? req.readUInt32LE(InHeader.opcode) : 0;
    const unique = req.length >= 16 ? req.readBigUInt64LE(InHeader.unique) : 0n;
    const id = this.nextId++;
    if (opcode === Op.INIT) {
      this.init = Buffer.from(req);
      this.initId = id;
    }
    const msg: ReqMsg = { t: 'req', id, buf: req };
    if (opcode === Op.ACCESS && this.cfg.sandbox !== 'none' && req.length >= InHeader.SIZE) {
      msg.groups = processGroups(req.readUInt32LE(InHeader.pid));
    }
    return new Promise((resolve) => {
      this.pending.set(id, { resolve, unique, opcode });
      if (this.ready && !this.paused) this.send(msg);
      else this.queue.push(msg);
    });
  }

  get inflight(): number {
    return this.pending.size - this.queue.length;
  }

  private send(m: ToWorker): void {
    try {
      this.worker?.send(m);
    } catch (e) {
      this.log.warn({ err: e }, 'cannot send to the worker');
    }
  }

  /** Start a worker with the given state; resolves when it is ready. */
  start(state: Buffer | null): Promise<void> {
    const gen = ++this.generation;
    const child = forkWorker(WORKER, [], this.launch);
    this.worker = child;
    this.ready = false;
    return new Promise<void>((resolve, reject) => {
      child.on('message', (raw) => {
        const m = asFromWorker(raw);
        if (m) this.onMessage(m, resolve, reject);
        else this.log.warn('an unknown message from the worker; ignored');
      });
      child.on('exit', (code, signal) => this.onExit(gen, child, code, signal, reject));
      const start: StartMsg = {
        t: 'start', cfg: this.cfg, root: this.root, key: this.keys.key, previousKeys: this.keys.previousKeys,
        state, records: state ? [] : this.records, init: this.init,
      };
      child.send(start);
    });
  }

  private onMessage(m: FromWorker, resolve: () => void, reject: (e: Error) => void): void {
    switch (m.t) {
      case 'ready':
        this.ready = true;
        this.log.info({ pid: this.worker?.pid, restored: m.restored, generation: this.generation }, 'worker ready');
        this.release();
        resolve();
        return;
      case 'fail':
        reject(new Error(m.message));
        return;
      case 'rep': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.id === this.initId && m.buf) this.negotiated = {};
        p.resolve(m.buf ? asBuffer(m.buf) : null);
        if (this.pending.size === this.queue.length && this.drained) this.drained();
        return;
      }
      case 'recs':
        for (const r of m.recs) {
          const b = asBuffer(r);
          this.records.push(b);
          this.recordBytes += b.length;
        }
        // bounded: past 64 MiB of streamed records, keep the newer half (older ids fall back to ESTALE)
        if (this.recordBytes > 64 << 20) {
          const keep = this.records.splice(0, this.records.length >> 1);
          this.recordBytes -= keep.reduce((n, b) => n + b.length, 0);
        }
        return;
      case 'state':
        this.onState?.(asBuffer(m.blob));
        return;
    }
  }

  private onExit(gen: number, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, reject: (e: Error) => void): void {
    if (gen !== this.generation || child !== this.worker) return; // an old worker, already replaced
    this.ready = false;
    reject(new Error(`worker exited (${signal ?? code}) before it was ready`));
    // every request the worker had not answered: EIO, never a client hanging forever
    const queued = new Set(this.queue.map((q) => q.id));
    let failed = 0;
    for (const [id, p] of this.pending) {
      if (queued.has(id)) continue;
      this.pending.delete(id);
      p.resolve(noReply(p.opcode) ? null : encodeError(p.unique, E.EIO));
      failed++;
    }
    if (this.stopping) return;
    this.log.error({ code, signal, failedRequests: failed }, 'the worker died; restarting it (requests in flight were answered EIO)');
    const n = this.budget.crashed();
    if (n !== null) {
      this.onFatal(`the worker crashed ${n} times within a minute`);
      return;
    }
    this.start(null).catch((e: unknown) => this.onFatal(`cannot restart the worker: ${(e as Error).message}`));
  }

  private release(): void {
    const q = this.queue;
    this.queue = [];
    for (const r of q) this.send(r);
  }

  /** Upgrade: drain, take the full state, stop the old worker, start a new one with it. */
  async upgrade(): Promise<void> {
    if (!this.ready || this.paused) return;
    this.paused = true;
    const old = this.worker!;
    this.log.info({ pid: old.pid, inflight: this.inflight }, 'upgrade: draining the worker');
    if (this.inflight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, DRAIN_MS);
        this.drained = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.drained = null;
    }
    const state = await askState(old, (to) => (this.onState = to));
    this.generation++; // the old worker's exit is no crash
    await stopWorker(old);
    // requests the old worker never answered within the drain window
    for (const [id, p] of this.pending) {
      if (this.queue.some((q) => q.id === id)) continue;
      this.pending.delete(id);
      p.resolve(noReply(p.opcode) ? null : encodeError(p.unique, E.EINTR));
    }
    this.paused = false;
    await this.start(state);
    this.log.info({ pid: this.worker?.pid, stateBytes: state.length }, 'upgrade done');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.worker) await stopWorker(this.worker);
  }

  /** For the supervisor's stats file (the worker writes the core's counters itself). */
  counters(): { workerPid: number | undefined; generation: number; records: number } {
    return { workerPid: this.worker?.pid, generation: this.generation, records: this.records.length };
  }
}
