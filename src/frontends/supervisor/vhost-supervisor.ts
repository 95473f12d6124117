/**
 * `handlefs virtiofsd --supervise`: the VMM's vhost-user connection stays here while a worker
 * process serves the guest, so that an upgrade (SIGHUP) or a crash of the worker is invisible to
 * the guest. The split puts nothing on the per-request path:
 *
 * - Data plane (every request): the worker maps guest memory, watches the kick eventfds, takes
 *   chains off the rings, serves them and signals the call eventfds itself. The supervisor never
 *   sees a request.
 * - Control plane (a few dozen messages per guest boot): the supervisor reads the VMM's messages,
 *   keeps those that describe the device (features, memory table, queue set-up) with duplicates of
 *   their fds, and relays each to the worker over a socketpair; the worker's replies come back the
 *   same way. The worker reports the guest's FUSE INIT and streams its sealed inode records.
 * - In-flight table: a memfd shared with every worker (inflight.ts). The worker records what it
 *   took off each queue before serving it and what it answered.
 *
 * A successor gets the records and INIT over IPC, then the kept messages replayed (without reply
 * requests), then the table: each queue resumes at the avail index its predecessor reached, and
 * the chains a crashed predecessor took and never answered get an EIO reply. Control messages the
 * VMM sent meanwhile were held and follow the replay.
 */
import type { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { CoreConfig, SealingKeys } from '../../config.js';
import { sys } from '../../sys/syscalls.js';
import type { ConnectionEnd, ConnectionOptions } from '../vhost-user/connection.js';
import { Private } from '../vhost-user/connection.js';
import { INFLIGHT_BYTES } from '../vhost-user/inflight.js';
import { FLAG_NEED_REPLY, HEADER_SIZE, MessageReader, ProtocolFeature, Req, featureMask, type RawMessage } from '../vhost-user/messages.js';
import { asBuffer, asFromWorker, type FromWorker, type StartMsg } from './protocol.js';
import { SupervisedRecords } from './record-log.js';
import { CrashBudget, askState, forkWorker, stopWorker, type Launch } from './spawn.js';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'vhost-worker.js');
/** the worker's end of the relay: fd 4 (0-2 stdio, 3 Node's IPC channel) */
export const RELAY_FD = 4;
/** the shared record log (record-log.ts): fd 5 */
export const RECORD_LOG_FD = 5;
const DRAIN_MS = 10_000;
const RECV_FDS = 32;
const F_DUPFD_CLOEXEC = 1030;
const P_REPLY_ACK = featureMask(ProtocolFeature.REPLY_ACK);
/** requests answered with a value (not only an ack): re-asked of a successor when a worker died first */
const VALUE_REQUESTS: ReadonlySet<number> = new Set([
  Req.GET_FEATURES, Req.GET_PROTOCOL_FEATURES, Req.GET_QUEUE_NUM, Req.GET_MAX_MEM_SLOTS, Req.GET_VRING_BASE, Req.GET_STATUS,
]);
/** queue set-up kept per queue, replayed in this order */
const VRING_ORDER = [Req.SET_VRING_NUM, Req.SET_VRING_BASE, Req.SET_VRING_ADDR, Req.SET_VRING_KICK, Req.SET_VRING_CALL, Req.SET_VRING_ERR, Req.SET_VRING_ENABLE];

const closeQuietly = (fd: number): void => {
  try {
    sys.close(fd);
  } catch {
    /* closed */
  }
};
const dup = (fd: number): number => sys.fcntlInt(fd, F_DUPFD_CLOEXEC, 3);

function encode(m: { request: number; flags: number; payload: Buffer }): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE + m.payload.length);
  b.writeUInt32LE(m.request, 0);
  b.writeUInt32LE(m.flags, 4);
  b.writeUInt32LE(m.payload.length, 8);
  m.payload.copy(b, HEADER_SIZE);
  return b;
}

/** A kept message: its bytes and our own duplicates of its fds. */
interface Kept {
  request: number;
  flags: number;
  payload: Buffer;
  fds: number[];
}

/** The device as the VMM set it up: what a successor is told before it serves. */
class DeviceRecord {
  private readonly single = new Map<number, Kept>();
  private memory: Kept[] = [];
  private readonly vrings = new Map<string, Kept>();
  protocolFeatures = 0n;

  /** Keep `m` if it shapes the device (fds duplicated; the caller keeps its own). */
  note(m: RawMessage): void {
    const keep = (): Kept => ({ request: m.request, flags: m.flags & ~FLAG_NEED_REPLY, payload: Buffer.from(m.payload), fds: m.fds.map(dup) });
    const drop = (k: Kept | undefined): void => k?.fds.forEach(closeQuietly);
    switch (m.request) {
      case Req.SET_FEATURES:
      case Req.SET_PROTOCOL_FEATURES:
      case Req.SET_OWNER:
        if (m.request === Req.SET_PROTOCOL_FEATURES && m.payload.length === 8) this.protocolFeatures = m.payload.readBigUInt64LE(0);
        drop(this.single.get(m.request));
        this.single.set(m.request, keep());
        return;
      case Req.RESET_OWNER:
        this.clear();
        return;
      case Req.SET_MEM_TABLE:
        this.memory.forEach(drop);
        this.memory = [keep()];
        return;
      case Req.ADD_MEM_REG:
      case Req.REM_MEM_REG:
        this.memory.push(keep());
        return;
      case Req.GET_VRING_BASE:
        // the queue stopped: the VMM sets it up again before it runs
        if (m.payload.length >= 4) this.dropQueue(m.payload.readUInt32LE(0));
        return;
      default:
        if (VRING_ORDER.includes(m.request as (typeof VRING_ORDER)[number]) && m.payload.length >= 4) {
          const key = `${m.payload.readUInt32LE(0) & 0xff}:${m.request}`;
          drop(this.vrings.get(key));
          this.vrings.set(key, keep());
        }
    }
  }

  private dropQueue(index: number): void {
    for (const [k, v] of this.vrings) {
      if (k.startsWith(`${index}:`)) {
        v.fds.forEach(closeQuietly);
        this.vrings.delete(k);
      }
    }
  }

  /** The messages to replay, in an order a fresh back-end accepts, each with fresh fd duplicates. */
  replay(): Kept[] {
    const out: Kept[] = [];
    for (const r of [Req.SET_FEATURES, Req.SET_PROTOCOL_FEATURES, Req.SET_OWNER]) {
      const k = this.single.get(r);
      if (k) out.push(k);
    }
    out.push(...this.memory);
    const queues = [...new Set([...this.vrings.keys()].map((k) => Number(k.split(':')[0])))].sort((a, b) => a - b);
    for (const q of queues) for (const r of VRING_ORDER) {
      const k = this.vrings.get(`${q}:${r}`);
      if (k) out.push(k);
    }
    return out.map((k) => ({ ...k, fds: k.fds.map(dup) }));
  }

  clear(): void {
    for (const k of [...this.single.values(), ...this.memory, ...this.vrings.values()]) k.fds.forEach(closeQuietly);
    this.single.clear();
    this.memory = [];
    this.vrings.clear();
  }
}

export interface VhostSupervisorOptions {
  cfg: CoreConfig;
  root: string;
  keys: SealingKeys;
  connection: Omit<ConnectionOptions, 'supervised'>;
  log: Logger;
  /** a program that starts Node for the worker (the sandbox launcher), its arguments before Node's own, and the environment; null: Node directly */
  launch: Launch | null;
}

/** One VMM connection served by a succession of workers. */
export class VhostSupervisor {
  private readonly device = new DeviceRecord();
  private readonly vmmReader = new MessageReader();
  private readonly rx = Buffer.alloc(4096 + HEADER_SIZE);
  private vmmPoll: unknown = null;
  private worker: ChildProcess | null = null;
  private relay = -1;
  private relayPoll: unknown = null;
  private relayReader = new MessageReader();
  /** the worker takes messages (ready, replayed, not draining) */
  private open = false;
  /** VMM messages held while no worker takes them */
  private held: RawMessage[] = [];
  /** messages relayed to the worker whose reply has not come back, in order */
  private awaiting: Array<{ request: number; flags: number; payload: Buffer; kept: boolean }> = [];
  private readonly inflightFd: number;
  private readonly records = new SupervisedRecords();
  private init: Buffer | null = null;
  private generation = 0;
  private readonly budget = new CrashBudget();
  private ended = false;
  private drainDone: (() => void) | null = null;
  private onState: ((b: Buffer) => void) | null = null;
  private endWith: (e: ConnectionEnd) => void = () => {};
  readonly done: Promise<ConnectionEnd>;
  readonly counters = { workers: 0, crashes: 0, upgrades: 0, heldMessages: 0 };

  constructor(private readonly vmm: number, private readonly o: VhostSupervisorOptions) {
    this.done = new Promise((r) => (this.endWith = r));
    this.inflightFd = sys.memfdCreate('handlefs-inflight', INFLIGHT_BYTES);
  }

  async start(): Promise<void> {
    await this.spawn(null, false);
    this.vmmPoll = sys.pollStart(this.vmm, () => this.guard(() => this.onVmm()));
  }

  private guard(fn: () => void): void {
    if (this.ended) return;
    try {
      fn();
    } catch (e) {
      this.o.log.error({ err: e }, 'vhost-user supervisor: internal error; closing the connection');
      this.finish({ reason: 'error', message: (e as Error).message });
    }
  }

  private onVmm(): void {
    for (let i = 0; i < 64 && !this.ended; i++) {
      const r = sys.recvMsg(this.vmm, this.rx, 0, this.rx.length, RECV_FDS);
      if (r === null) return;
      if (r.n === 0 || r.truncated) {
        r.fds.forEach(closeQuietly);
        this.finish(r.n === 0 ? { reason: 'closed' } : { reason: 'error', message: 'too many file descriptors on a message' });
        return;
      }
      const out = this.vmmReader.feed(this.rx.subarray(0, r.n), r.fds);
      if ('fatal' in out) {
        out.fds.forEach(closeQuietly);
        this.o.log.warn(`vhost-user: malformed message stream: ${out.fatal}; closing the connection`);
        this.finish({ reason: 'error', message: out.fatal });
        return;
      }
      for (const m of out) {
        this.device.note(m);
        if (this.open) this.toWorker(m);
        else {
          this.held.push(m);
          this.counters.heldMessages++;
        }
      }
    }
  }

  private needsReply(m: { request: number; flags: number }): boolean {
    return VALUE_REQUESTS.has(m.request) || ((m.flags & FLAG_NEED_REPLY) !== 0 && (this.device.protocolFeatures & P_REPLY_ACK) !== 0n);
  }

  /** Relay one VMM message to the worker; its fds are given away. */
  private toWorker(m: RawMessage): void {
    if (this.needsReply(m)) this.awaiting.push({ request: m.request, flags: m.flags, payload: m.payload, kept: !VALUE_REQUESTS.has(m.request) });
    const n = sys.sendMsg(this.relay, encode(m), 0, HEADER_SIZE + m.payload.length, m.fds);
    m.fds.forEach(closeQuietly);
    if (n < 0) this.o.log.warn({ request: m.request }, 'vhost-user: the worker did not take a message; it is replayed to its successor');
  }

  private onRelay(): void {
    for (let i = 0; i < 64 && !this.ended; i++) {
      const r = sys.recvMsg(this.relay, this.rx, 0, this.rx.length, RECV_FDS);
      if (r === null) return;
      r.fds.forEach(closeQuietly); // a worker sends no fds
      if (r.n === 0) return; // the worker is gone: its exit event restarts it
      const out = this.relayReader.feed(this.rx.subarray(0, r.n));
      if ('fatal' in out) {
        this.o.log.error(`vhost-user: the worker sent a malformed message (${out.fatal}); restarting it`);
        this.worker?.kill('SIGKILL');
        return;
      }
      for (const m of out) {
        if (m.request === Private.INIT) this.init = Buffer.from(m.payload);
        else if (m.request === Private.DRAIN) this.drainDone?.();
        else {
          this.awaiting.shift();
          const b = encode(m);
          if (sys.sendMsg(this.vmm, b, 0, b.length) !== b.length) this.finish({ reason: 'error', message: 'cannot send a reply to the VMM' });
        }
      }
    }
  }

  /** Start a worker (with the full state of a drained predecessor, or the streamed records) and bring it up to date. */
  private spawn(state: Buffer | null, successor: boolean): Promise<void> {
    const gen = ++this.generation;
    const [mine, theirs] = sys.socketpairUnix();
    const child = forkWorker(WORKER, [theirs, this.records.fd], this.o.launch);
    closeQuietly(theirs);
    this.worker = child;
    this.relay = mine;
    this.relayReader = new MessageReader();
    this.counters.workers++;
    return new Promise<void>((resolve, reject) => {
      child.on('message', (raw) => {
        const m = asFromWorker(raw);
        if (m) this.onMessage(m, gen, successor, resolve, reject);
      });
      child.on('exit', (code, signal) => this.onExit(gen, code, signal, reject));
      const start: StartMsg = {
        t: 'start', cfg: this.o.cfg, root: this.o.root, key: this.o.keys.key, previousKeys: this.o.keys.previousKeys,
        state, records: state ? [] : this.records.forSuccessor(),
        init: this.init, vhost: this.o.connection,
      };
      child.send(start);
    });
  }

  private onMessage(m: FromWorker, gen: number, successor: boolean, resolve: () => void, reject: (e: Error) => void): void {
    switch (m.t) {
      case 'ready':
        if (gen !== this.generation) return;
        this.relayPoll = sys.pollStart(this.relay, () => this.guard(() => this.onRelay()));
        this.bringUp(successor);
        this.o.log.info({ pid: this.worker?.pid, restored: m.restored, generation: gen }, 'vhost-user worker ready');
        resolve();
        return;
      case 'fail':
        reject(new Error(m.message));
        return;
      case 'recs':
        this.records.add(m.recs);
        return;
      case 'state':
        this.onState?.(asBuffer(m.blob));
        return;
      case 'rep':
        return;
    }
  }

  /** The in-flight table, the device replayed, then what waited: the worker serves from here on. */
  private bringUp(successor: boolean): void {
    const flags = Buffer.alloc(8);
    flags.writeBigUInt64LE(successor ? 1n : 0n);
    const t = dup(this.inflightFd);
    sys.sendMsg(this.relay, encode({ request: Private.INFLIGHT, flags: 1, payload: flags }), 0, HEADER_SIZE + 8, [t]);
    closeQuietly(t);
    if (successor) {
      for (const k of this.device.replay()) {
        sys.sendMsg(this.relay, encode(k), 0, HEADER_SIZE + k.payload.length, k.fds);
        k.fds.forEach(closeQuietly);
      }
      // replies a dead worker owed: an ack for a kept message (the replay applied it), a value asked again
      const owed = this.awaiting;
      this.awaiting = [];
      for (const a of owed) {
        if (a.kept) this.ackVmm(a.request);
        else this.toWorker({ request: a.request, flags: a.flags, payload: a.payload, fds: [] });
      }
    }
    this.open = true;
    const held = this.held;
    this.held = [];
    for (const m of held) this.toWorker(m);
  }

  private ackVmm(request: number): void {
    const b = Buffer.alloc(HEADER_SIZE + 8);
    b.writeUInt32LE(request, 0);
    b.writeUInt32LE(0x5, 4);
    b.writeUInt32LE(8, 8);
    sys.sendMsg(this.vmm, b, 0, b.length);
  }

  private closeRelay(): void {
    this.open = false;
    if (this.relayPoll) sys.pollStop(this.relayPoll);
    this.relayPoll = null;
    if (this.relay >= 0) closeQuietly(this.relay);
    this.relay = -1;
  }

  private onExit(gen: number, code: number | null, signal: NodeJS.Signals | null, reject: (e: Error) => void): void {
    if (gen !== this.generation) return; // replaced on purpose (upgrade)
    reject(new Error(`the worker exited during start (code ${code}, signal ${signal})`));
    this.closeRelay();
    if (this.ended) return;
    this.counters.crashes++;
    this.o.log.error({ code, signal }, 'the vhost-user worker died; starting a successor (requests it had taken are answered EIO)');
    const n = this.budget.crashed();
    if (n !== null) {
      this.finish({ reason: 'error', message: `the worker crashed ${n} times within a minute` });
      return;
    }
    this.spawn(null, true).catch((e: unknown) => this.finish({ reason: 'error', message: `cannot restart the worker: ${(e as Error).message}` }));
  }

  /** SIGHUP: the worker stops taking requests and answers those it took; its state goes to a successor on the code on disk. */
  async upgrade(): Promise<void> {
    const old = this.worker;
    if (!this.open || !old || this.ended) return;
    this.open = false;
    this.counters.upgrades++;
    this.o.log.info({ pid: old.pid }, 'upgrade: draining the vhost-user worker');
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, DRAIN_MS);
      this.drainDone = () => {
        clearTimeout(t);
        resolve();
      };
      sys.sendMsg(this.relay, encode({ request: Private.DRAIN, flags: 1 | FLAG_NEED_REPLY, payload: Buffer.alloc(0) }), 0, HEADER_SIZE);
    });
    this.drainDone = null;
    const state = await askState(old, (to) => (this.onState = to));
    this.generation++; // its exit is no crash
    await stopWorker(old);
    this.closeRelay();
    if (this.ended) return;
    this.records.upgraded(state);
    await this.spawn(state, true);
    this.o.log.info({ pid: this.worker?.pid, stateBytes: state.length }, 'upgrade done');
  }

  counterValues(): Record<string, number> {
    return { ...this.counters };
  }

  close(): void {
    this.finish({ reason: 'closed' });
  }

  private finish(end: ConnectionEnd): void {
    if (this.ended) return;
    this.ended = true;
    if (this.vmmPoll) sys.pollStop(this.vmmPoll);
    this.vmmPoll = null;
    const w = this.worker;
    this.closeRelay();
    if (w && w.exitCode === null && w.signalCode === null) {
      w.send({ t: 'stop' }, () => {});
      const t = setTimeout(() => w.kill('SIGKILL'), 5000);
      w.once('exit', () => clearTimeout(t));
    }
    for (const m of this.held) m.fds.forEach(closeQuietly);
    this.held = [];
    this.vmmReader.close().forEach(closeQuietly);
    this.device.clear();
    closeQuietly(this.inflightFd);
    this.records.close();
    closeQuietly(this.vmm);
    this.endWith(end);
  }
}
