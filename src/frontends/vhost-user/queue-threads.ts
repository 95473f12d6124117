/**
 * Request queues of a virtio-fs device served on serving threads of their own (`handlefs
 * virtiofsd --threads N`): one queue per thread. The thread that runs the filesystem (the owner:
 * the main thread) keeps the vhost-user connection, the hiprio queue and the first request queue;
 * request queue k (vring index k + 1) is served by thread k, a worker thread that maps guest memory
 * itself, runs the queue's ring (queue-runner.ts, the same code as the owner's) and answers there
 * what the filesystem as it sees it can answer (src/frontends/thread-server.ts, the same as the
 * /dev/fuse threads'); every other request it hands to the owner as bytes and writes the owner's
 * reply into its chain.
 *
 * The connection starts, stops and remaps a queue through RemoteQueues: each of those calls returns
 * once the thread has done it (the owner waits on a shared word, at most CALL_MS), because the VMM
 * may reuse the memory, the ring or the eventfds once the message is acknowledged. The fds a thread
 * needs (guest memory, kick, call) are dups it takes over and closes itself.
 *
 * A guest uses more than one request queue only where its driver does (Linux 6.11 and later) and
 * the VMM offers them (QEMU: vhost-user-fs-pci's num-request-queues).
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { E } from '../../errors.js';
import { encodeError } from '../../fuse/codec.js';
import type { NegotiatedState } from '../../fuse/protocol-server.js';
import { LogOnce } from '../../log.js';
import { HandedOps, type InodeTableUpdate, type ThreadPlan, type ThreadServerData } from '../thread-server.js';
import type { RemoteQueues, RemoteQueueSpec, RemoteRegion } from './connection.js';
import { closeQuietly, dupFor } from './mapping.js';

/** How long the owner waits for a thread to start, stop or remap its queue before it gives the thread up. */
const CALL_MS = 5000;
/** How long launch() waits for the threads to be ready. */
const START_MS = 10_000;
/** How long close() waits for a thread to end by itself. */
const END_MS = 2000;

/** Per thread in the stats: requests taken from its queue, answered there, handed to the owner. */
export const QUEUE_STATS = 3;

/** What a queue's thread is started with (queue-worker.ts). */
export interface QueueThreadData extends ThreadServerData {
  /** the vring index it serves */
  queue: number;
  /** Int32 [seq, result]: the answer to the owner's last call */
  ctl: SharedArrayBuffer;
  /** QUEUE_STATS numbers per thread, the owner's row first (unused) */
  stats: SharedArrayBuffer;
  /** HandedOps per thread */
  handedOps: SharedArrayBuffer;
}

/** The owner's messages to a queue's thread. A `seq` message is a call: the thread answers through ctl. */
export type ToQueueThread =
  | InodeTableUpdate
  | { adopt: NegotiatedState | null }
  | { start: RemoteQueueSpec; regions: RemoteRegion[]; seq: number }
  | { stop: true; seq: number }
  | { remap: RemoteRegion[]; seq: number }
  | { kick: number }
  | { call: number }
  /** the owner's replies to hand-overs (null: none, the request had no reply) */
  | { replies: ReplyBatch }
  /** the connection ended: stop, release, exit */
  | { end: true };

/**
 * Hand-overs and their replies travel in batches, one message per turn of the sender's event
 * loop: a message costs both threads more than its bytes (serialising, waking the receiver, a call
 * into JavaScript and a microtask checkpoint per message there), and the chains a kick brings are
 * taken in one turn.
 */
export type HandOverBatch = { id: number; req: ArrayBuffer }[];
export type ReplyBatch = { id: number; bytes: ArrayBuffer | null }[];

/** A queue's thread's messages to the owner. */
export type FromQueueThread =
  | { ready: true }
  /** requests the thread does not serve, each with the id its reply comes back under */
  | { handOvers: HandOverBatch }
  /** the guest broke the queue, or the thread cannot go on serving it: it stopped */
  | { broken: string };

/** What the owner serves handed-over requests with: its protocol server. */
export interface QueueOwner {
  handle(req: Buffer): Promise<Buffer | null>;
  recycle?(reply: Buffer): void;
}

interface QueueThread {
  worker: Worker;
  ctl: Int32Array;
  seq: number;
  /** the queue's connection side, told when the thread stops it on its own */
  onBroken: ((why: string) => void) | null;
  ended: Promise<void>;
  /** ended, or gave no answer to a call: given up (its queue is served no more) */
  lost: boolean;
  /** replies to its hand-overs not yet posted (replyTo) */
  outbox: ReplyBatch;
}

export class QueueThreads implements RemoteQueues {
  private readonly threads: QueueThread[] = [];
  private readonly once: LogOnce;
  private readonly stats: Float64Array;
  private readonly handedOps: HandedOps;
  private negotiated: NegotiatedState | null = null;
  private stopping = false;
  private handedOver = 0;

  private readonly log: Logger;

  /** `plan.count`: serving threads, the owner included, and so the request queues offered */
  constructor(private readonly owner: QueueOwner, private readonly plan: ThreadPlan) {
    this.log = plan.log;
    this.once = new LogOnce(plan.log);
    this.stats = new Float64Array(new SharedArrayBuffer(plan.count * QUEUE_STATS * 8));
    this.handedOps = new HandedOps(plan.count);
  }

  /** Start the other count - 1 threads. One that cannot be started is logged and left out: the VMM is offered fewer queues. */
  async launch(): Promise<void> {
    this.plan.inodeTable?.subscribe((t) => {
      for (const s of this.threads) s.worker.postMessage({ inodeTable: t } satisfies ToQueueThread);
    });
    const started: Promise<void>[] = [];
    for (let i = 1; i < this.plan.count; i++) {
      const data: QueueThreadData = {
        index: i, queue: i + 1, tables: this.plan.tables, fs: this.plan.fs, logLevel: this.log.level, inodeTable: this.plan.inodeTable?.current ?? null,
        ctl: new SharedArrayBuffer(8), stats: this.stats.buffer as SharedArrayBuffer, handedOps: this.handedOps.buffer,
      };
      let worker: Worker;
      try {
        worker = new Worker(new URL('./queue-worker.js', import.meta.url), { workerData: data });
      } catch (e) {
        this.log.warn({ err: e }, `cannot start a serving thread: serving ${i} request queue(s)`);
        break;
      }
      let ready!: () => void;
      started.push(new Promise<void>((r) => (ready = r)));
      const t: QueueThread = {
        worker, ctl: new Int32Array(data.ctl), seq: 0, onBroken: null, lost: false, outbox: [],
        ended: new Promise<void>((resolve) => worker.on('exit', () => {
          t.lost = true;
          ready();
          resolve();
        })),
      };
      // a thread that fails takes the requests it had taken with it: the guest would wait for
      // them for ever, so the whole server stops, as a C server's crash in one of its threads would
      worker.on('error', (e) => {
        // it answers no call any more: the connection's stop of its queue must not wait for it
        t.lost = true;
        this.log.error({ err: e, thread: i }, `serving thread ${i} failed (bug)`);
        this.plan.onFatal(`serving thread ${i} failed: ${e.message}`);
      });
      worker.on('message', (m: FromQueueThread) => {
        if ('ready' in m) ready();
        else if ('handOvers' in m) for (const h of m.handOvers) this.handOver(t, h.id, Buffer.from(h.req));
        else if ('broken' in m) t.onBroken?.(m.broken);
      });
      if (this.negotiated !== null) worker.postMessage({ adopt: this.negotiated } satisfies ToQueueThread);
      this.threads.push(t);
    }
    let late: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(started), new Promise<void>((r) => (late = setTimeout(r, START_MS)))]);
    clearTimeout(late);
    this.log.info({ threads: 1 + this.threads.length }, `serving request queues with ${1 + this.threads.length} threads`);
  }

  /** The request queues offered to the VMM: one per serving thread. */
  get requestQueues(): number {
    return 1 + this.threads.length;
  }

  /** What INIT settled (null after DESTROY): the threads serve with it, and hand everything over without it. */
  adopt(n: NegotiatedState | null): void {
    this.negotiated = n;
    for (const t of this.threads) t.worker.postMessage({ adopt: n } satisfies ToQueueThread);
  }

  private threadOf(index: number): QueueThread | undefined {
    return index >= 2 ? this.threads[index - 2] : undefined;
  }

  serves(index: number): boolean {
    const t = this.threadOf(index);
    return t !== undefined && !t.lost;
  }

  start(index: number, spec: RemoteQueueSpec, regions: RemoteRegion[], onBroken: (why: string) => void): boolean {
    const t = this.threadOf(index)!;
    t.onBroken = onBroken;
    const r = this.call(t, (seq) => ({ start: spec, regions, seq }));
    if (r === null) {
      // the thread did not take the dups: they are closed here
      for (const fd of [spec.kickFd, spec.callFd, ...regions.map((g) => g.fd)]) closeQuietly(fd);
    }
    return r === 0;
  }

  stop(index: number): number | null {
    const t = this.threadOf(index)!;
    t.onBroken = null;
    return this.call(t, (seq) => ({ stop: true, seq }));
  }

  setKick(index: number, fd: number): void {
    this.threadOf(index)!.worker.postMessage({ kick: fd } satisfies ToQueueThread);
  }

  setCall(index: number, fd: number): void {
    this.threadOf(index)!.worker.postMessage({ call: fd } satisfies ToQueueThread);
  }

  remap(regions: RemoteRegion[]): boolean {
    let ok = true;
    // each running queue's thread maps the table itself: every one but the first gets its own dups
    let first = true;
    for (const t of this.threads) {
      if (t.onBroken === null || t.lost) continue;
      const mine = first ? regions : regions.map((g) => ({ ...g, fd: dupFor(g.fd) }));
      first = false;
      if (this.call(t, (seq) => ({ remap: mine, seq })) !== 0) ok = false;
    }
    if (first) for (const g of regions) closeQuietly(g.fd);
    return ok;
  }

  /**
   * A call: post the message, wait until the thread answers through ctl. A thread that does not
   * answer in CALL_MS is given up (its queue is served no more, and the connection ends).
   */
  private call(t: QueueThread, msg: (seq: number) => ToQueueThread): number | null {
    if (t.lost) return null;
    const seq = ++t.seq;
    t.worker.postMessage(msg(seq));
    const deadline = Date.now() + CALL_MS;
    for (;;) {
      if (Atomics.load(t.ctl, 0) === seq) return Atomics.load(t.ctl, 1);
      const left = deadline - Date.now();
      if (left <= 0) break;
      Atomics.wait(t.ctl, 0, seq - 1, Math.min(left, 50));
    }
    t.lost = true;
    this.log.error({ queue: this.threads.indexOf(t) + 2 }, 'a serving thread did not answer its queue\'s control message');
    return null;
  }

  /** A request the thread did not serve: answered here, the reply sent back (a copy: the server reuses its buffers). */
  private handOver(t: QueueThread, id: number, req: Buffer): void {
    this.handedOver++;
    this.owner.handle(req).then((reply) => {
      const out = reply ?? null;
      let bytes: ArrayBuffer | null = null;
      if (out !== null) {
        bytes = new ArrayBuffer(out.length);
        new Uint8Array(bytes).set(out);
        this.owner.recycle?.(out);
      }
      this.replyTo(t, id, bytes);
    }, (e: unknown) => {
      this.once.error('queue-handover-rejected', { err: e }, 'protocol server rejected a request (bug)');
      this.replyTo(t, id, req.length >= 16 ? toArrayBuffer(encodeError(req.readBigUInt64LE(8), E.EIO)) : null);
    });
  }

  /** Queue a hand-over's reply for its thread: the replies of one turn go as one message (HandOverBatch). */
  private replyTo(t: QueueThread, id: number, bytes: ArrayBuffer | null): void {
    if (t.outbox.push({ id, bytes }) > 1) return;
    setImmediate(() => {
      const replies = t.outbox;
      t.outbox = [];
      t.worker.postMessage({ replies } satisfies ToQueueThread, replies.flatMap((r) => (r.bytes ? [r.bytes] : [])));
    });
  }

  /** Per-thread numbers for the stats file: requests taken, answered there, handed to the owner (and by opcode). */
  counters(): { threads: number; queueThreads: Array<{ queue: number; requests: number; served: number; handedOver: number; handedOverByOp: Record<string, number> }>; handedOverToOwner: number } {
    const s = this.stats;
    const queueThreads = [];
    for (let i = 1; i <= this.threads.length; i++) {
      const r = i * QUEUE_STATS;
      queueThreads.push({ queue: i + 1, requests: s[r]!, served: s[r + 1]!, handedOver: s[r + 2]!, handedOverByOp: this.handedOps.byName(i) });
    }
    return { threads: 1 + this.threads.length, queueThreads, handedOverToOwner: this.handedOver };
  }

  /**
   * End the threads (after the connection stopped their queues): each closes what it opened (its
   * rename watch: fds are the process's, and a terminated isolate leaves them open) and exits; one
   * that does not within END_MS is terminated.
   */
  async close(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await Promise.all(this.threads.map(async (t) => {
      t.worker.postMessage({ end: true } satisfies ToQueueThread);
      const late = setTimeout(() => void t.worker.terminate(), END_MS);
      await t.ended;
      clearTimeout(late);
    }));
    this.threads.length = 0;
  }
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  const ab = new ArrayBuffer(b.length);
  new Uint8Array(ab).set(b);
  return ab;
}
