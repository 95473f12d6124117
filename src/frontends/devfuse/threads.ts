/**
 * More serving threads on one /dev/fuse connection (--threads N). The thread that runs the
 * filesystem (the owner: the main thread) reads the device as before; each other thread is a
 * worker thread, bound to a CPU, that reads its own clone of the connection (FUSE_DEV_IOC_CLONE)
 * and answers there what it can with the fds the owner published (src/fs/shared-files.ts) and
 * without the filesystem's state: GETATTR and READLINK of known inodes, READ, WRITE, FSYNC and
 * FLUSH of open files. Every other request it
 * hands to the owner as bytes; the owner answers it on that thread's clone (a reply must go back
 * on the channel its request came from; fds are process-wide, so the owner writes it itself).
 *
 * Why some threads at all: a FUSE round trip is cheap only when the server's thread runs on the
 * client's CPU (README, "Serving requests from more than one thread"); a reader on each CPU lets
 * the kernel wake one there.
 */
import { readFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { cpus } from 'node:os';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { NegotiatedState } from '../../fuse/protocol-server.js';
import { E } from '../../errors.js';
import { InHeader, ReadIn } from '../../fuse/abi.js';
import { encodeError, type TransportIo } from '../../fuse/codec.js';
import { Op, opcodeName } from '../../fuse/opcodes.js';
import { HandedOps, THREAD_OPS } from '../thread-server.js';
import type { SharedInodeLink } from '../../fs/shared-inodes.js';
import type { InodeTableUpdate, SharedTables, ThreadFsOptions, ThreadPlan, ThreadServerData } from '../thread-server.js';
import { LogOnce } from '../../log.js';
import { sys } from '../../sys/syscalls.js';
import { entryReplySpace, type RingSession } from './ring.js';
import { keepPolling, type AsideTurn, type RequestHandler } from './session.js';

/**
 * Per thread in ServingThreads.stats: requests read, answered there, handed to the owner, LOOKUPs
 * answered ENOENT there, RELEASEs answered there and handed over (ANSWERED_AT_ONCE), UNLINKs and
 * RMDIRs done there, large READs of its own CPU's queue handed to the owner (FAR_READ), LOOKUPs
 * of inodes the owner knows answered there (SharedInodes), times it stood aside (HANDOVER_ASIDE_MS).
 */
export const THREAD_STATS = 9;

export { THREAD_OPS, type InodeTableUpdate, type SharedTables, type ThreadFsOptions } from '../thread-server.js';

/** What a serving thread is started with (src/frontends/devfuse/thread-worker.ts). */
export interface ThreadData extends ThreadServerData {
  /** its clone of the connection */
  fd: number;
  /** the CPU it is bound to, -1 for none */
  cpu: number;
  negotiated: NegotiatedState;
  /** THREAD_STATS numbers per thread, the owner's first */
  stats: SharedArrayBuffer;
  /** HandedOps per thread, the owner's first: requests handed over by opcode */
  handedOps: SharedArrayBuffer;
  /** [busy, done] Int32 per thread (ServingThreads.settle) */
  gate: SharedArrayBuffer;
  /** where it hands requests to the owner (and, over io_uring, gets their replies back) */
  port: MessagePort;
  /** over io_uring: the Int32 words through which the owner gives back the reply of a request handed over (ReplyBack) */
  back: SharedArrayBuffer;
  /** over io_uring: the thread registers RING_DEPTH entries of its CPU's queue with this payload size */
  ring: { payloadSize: number; possible: number } | null;
  /** --poll-us in ms: the thread keeps its loop turning this long after answering a large READ of a caller on another CPU (FAR_READ) */
  hotMs: number;
  /** the word of asideTurn */
  aside: SharedArrayBuffer;
}

/** The owner's side: what it needs of its protocol server for requests handed over. */
export interface Owner extends RequestHandler {
  negotiatedState(): NegotiatedState | null;
  /** io: a ring entry's reply space, where a READ's reply is built */
  handle(req: Buffer, io?: TransportIo): Promise<Buffer | null>;
}

/**
 * Over io_uring, a READ of at least this size is served by a thread bound to another CPU than its
 * caller's. Such READs are the kernel's readahead for a streaming reader, which it puts on the
 * queue of the reader's CPU: served there, the reader and the serving thread take turns on one
 * CPU, and the scheduler, waking the reader while the thread still runs, moves it to the other
 * CPU at nearly every reply, its next READs then going to the other queue (README, "Benchmarks":
 * 420-790 migrations of fio per GiB). Served from the other CPU, the reader copies while the
 * server reads, as with one thread on /dev/fuse. Smaller READs (random reads: each caller waits
 * for its answer) stay on the caller's CPU, where a round trip costs no cross-CPU wake-up.
 */
export const FAR_READ = 128 * 1024;
const READ_SIZE = InHeader.SIZE + ReadIn.size;

/** Whether `req` (its first `n` bytes) is a READ that is served away from its caller's CPU (FAR_READ). */
export function farRead(req: Buffer, n = req.length): boolean {
  return n >= READ_SIZE + 4 && req.readUInt32LE(4) === Op.READ && req.readUInt32LE(READ_SIZE) >= FAR_READ;
}

/** A READ's reply is built in its ring entry (no copy at the commit). */
export function entryIo(req: Buffer, entry: number): TransportIo | undefined {
  return req.length >= 8 && req.readUInt32LE(4) === Op.READ ? { replySpace: entryReplySpace(entry) } : undefined;
}

interface Served {
  worker: Worker;
  fd: number;
  /** the owner's end of the thread's hand-over channel */
  port: MessagePort;
  /** ThreadData.back's words */
  back: Int32Array;
  ended: Promise<void>;
  /** requests it has handlers for that the owner's ring read in a row on this thread's entries (routeRing) */
  strayRun: number;
}

/** What a thread says once it serves: the ring queues it registered (over io_uring). */
export interface ThreadReady {
  ready: true;
  qids: number[];
}

/**
 * A request read from a ring and handed to another thread, which answers it through its own ring
 * (the entry then follows it): from a thread to the owner (what it does not serve), or from the
 * owner to the thread of the request's queue (a READ or WRITE, which that thread serves on its CPU).
 */
export interface RingHandOver {
  entry: number;
  req: ArrayBuffer;
}

/**
 * A request the thread has already answered, handed to the owner to be served without a reply:
 * a RELEASE or RELEASEDIR (ANSWERED_AT_ONCE).
 */
export interface AnsweredHandOver {
  answered: true;
  req: ArrayBuffer;
}

/** What a thread posts to the owner: a clone's request (the owner replies on that clone), a ring entry's, or one already answered. */
export type HandOver = ArrayBuffer | RingHandOver | AnsweredHandOver;

/**
 * Opcodes a thread other than the owner answers at once (success) and hands to the owner to be
 * served without a reply. The kernel sends RELEASE and RELEASEDIR in the background: no caller
 * waits for them, and their answer is dropped unread (an error included: the kernel cannot
 * undo a close); the owner closes the fds as if it had answered. The thread's channel or ring
 * entry is free again at once, without a reply that would have to come back to it; and nothing
 * can name the released fh after the kernel sent its RELEASE, so the owner serving it a moment
 * later changes no answer. The one order that shows, a lock the release drops, ServingThreads.settle keeps.
 */
export const ANSWERED_AT_ONCE: ReadonlySet<number> = new Set([Op.RELEASE, Op.RELEASEDIR]);

/**
 * Over io_uring, the reply to a request a thread handed over goes back to that thread, which waits
 * for it without sleeping and commits it through its own ring: its caller (on the thread's CPU)
 * is woken there, not from the owner's CPU, and the entry stays with the thread, so that the
 * caller's next request comes to it. Words of an Int32Array per thread: [state, reply length],
 * the state `entry * 4 + BACK_*` (the entry in it, so that a late reply to an abandoned wait can
 * never be taken for another entry's). The thread stores WAITING before handing over and gives up
 * after BACK_SPIN_MS (WAITING -> ABANDONED); the owner builds the reply in the entry's reply space
 * and sets REPLIED (WAITING -> REPLIED) or, when the thread gave up (or the reply does not fit),
 * commits it through its own ring as before. Both moves are compare-and-exchange: exactly one wins.
 */
export const BACK_WAITING = 1;
export const BACK_REPLIED = 2;
export const BACK_ABANDONED = 3;
/** how long a thread waits for the owner's reply to a request it handed over (it costs that thread's CPU only) */
export const BACK_SPIN_MS = 0.3;

/** The owner's side of ReplyBack: true when the waiting thread takes `reply` (now in the entry's reply space). */
export function giveBack(back: Int32Array, entry: number, reply: Buffer, space: () => Buffer): boolean {
  const waiting = entry * 4 + BACK_WAITING;
  if (Atomics.load(back, 0) !== waiting) return false;
  const into = space();
  if (reply.length > into.length) {
    // the thread stops waiting; the owner commits
    Atomics.compareExchange(back, 0, waiting, entry * 4 + BACK_ABANDONED);
    return false;
  }
  if (reply.buffer !== into.buffer || reply.byteOffset !== into.byteOffset) reply.copy(into, 0);
  Atomics.store(back, 1, reply.length);
  return Atomics.compareExchange(back, 0, waiting, entry * 4 + BACK_REPLIED) === waiting;
}

/**
 * The thread's side of ReplyBack, after posting the hand-over of `entry`: the reply's length once
 * the owner gave it back (built in the entry's reply space), or -1 when the owner commits it.
 */
export function awaitBack(back: Int32Array, entry: number, spinMs = BACK_SPIN_MS): number {
  const waiting = entry * 4 + BACK_WAITING;
  const until = performance.now() + spinMs;
  let s = Atomics.load(back, 0);
  while (s === waiting && performance.now() < until) s = Atomics.load(back, 0);
  if (s === waiting) s = Atomics.compareExchange(back, 0, waiting, entry * 4 + BACK_ABANDONED);
  if (s !== entry * 4 + BACK_REPLIED) return -1;
  return Atomics.load(back, 1);
}

/** How long the owner keeps looking for hand-overs after answering one (stayAwake), unless --poll-us says otherwise. */
const HOT_MS = 0.2;
/**
 * Requests a thread has handlers for that the owner's ring reads in a row on that thread's entries
 * before it sends the next one home with its entry (routeRing).
 */
const STRAY_RUN = 4;
/** How long start() waits for the threads to be ready. */
const START_MS = 10_000;

/**
 * On /dev/fuse clones, how long the owner leaves the device to the other threads after it read a
 * large READ (FAR_READ; ServingThreads.streamReader).
 */
export const ASIDE_MS = 10;

/**
 * On /dev/fuse clones, how long another thread leaves the device to the owner after it read a
 * request only the owner serves (thread-worker.ts; the owner polls meanwhile, ServingThreads.ownerPoll).
 */
export const HANDOVER_ASIDE_MS = 20;

/**
 * HANDLEFS_TEST_NO_ASIDE=1 (tests only): no reader stands aside, so that the mounted tests of what
 * the other threads serve on clones see them serve it.
 */
export const NO_ASIDE = process.env.HANDLEFS_TEST_NO_ASIDE === '1';

/**
 * The AsideTurn of reader `index` (0: the owner) over the threads' shared word, which holds the
 * index + 1 of the reader that stands aside, 0 for none.
 */
export function asideTurn(word: Int32Array, index: number): AsideTurn {
  return {
    take: () => Atomics.compareExchange(word, 0, 0, index + 1) === 0,
    give: () => {
      Atomics.compareExchange(word, 0, index + 1, 0);
    },
  };
}
/** How long settle() waits for the other threads' requests in hand. */
const SETTLE_MS = 20;

/** The CPUs this process may run on (its affinity, /proc/self/status), else all of them. */
export function allowedCpus(): number[] {
  try {
    const line = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    const out: number[] = [];
    for (const part of line?.split(',') ?? []) {
      const [a, b] = part.split('-').map(Number);
      if (!Number.isInteger(a)) continue;
      for (let c = a!; c <= (Number.isInteger(b) ? b! : a!) && out.length < 4096; c++) out.push(c);
    }
    if (out.length > 0) return out;
  } catch {
    /* no /proc */
  }
  return Array.from({ length: Math.max(1, cpus().length) }, (_, i) => i);
}

export class ServingThreads {
  private readonly threads: Served[] = [];
  private readonly once: LogOnce;
  /** requests, answered there, handed over; per thread, the owner's row first (its requests only) */
  readonly stats: Float64Array;
  private readonly handedOps: HandedOps;
  private stopping = false;
  /** the owner's session's request count (requests it read itself) */
  ownerRequests: () => number = () => 0;
  /** how often the owner's session stood aside (streamReader) */
  ownerAside: () => number = () => 0;

  private readonly count: number;
  private readonly tables: SharedTables;
  private readonly fsOptions: ThreadFsOptions;
  private readonly log: Logger;
  /** the caller stops serving (unmounts) */
  private readonly onFatal: (why: string) => void;
  private readonly inodeTable: SharedInodeLink | null;

  constructor(private readonly device: number, private readonly owner: Owner, plan: ThreadPlan) {
    ({ count: this.count, tables: this.tables, fs: this.fsOptions, log: this.log, onFatal: this.onFatal, inodeTable: this.inodeTable } = plan);
    this.once = new LogOnce(this.log);
    this.stats = new Float64Array(new SharedArrayBuffer(this.count * THREAD_STATS * 8));
    this.handedOps = new HandedOps(this.count);
    this.gate = new Int32Array(new SharedArrayBuffer(this.count * 2 * 4));
  }

  private readonly gate: Int32Array;

  /**
   * Start the other count - 1 threads, once INIT is answered. A thread that cannot be started is
   * logged and left out: the owner serves everything it would have. Over io_uring (ring), each
   * thread registers its CPU's queue; the answer is the queues the threads registered, and the
   * owner must register every other one (the kernel serves nothing until each queue has an entry).
   */
  async start(ring: { payloadSize: number; possible: number } | null = null): Promise<Set<number>> {
    const covered = new Set<number>();
    const negotiated = this.owner.negotiatedState();
    if (negotiated === null) throw new Error('serving threads start after INIT');
    // before the owner binds itself (its affinity is what allowedCpus reads)
    const allowed = allowedCpus();
    if (ring !== null) await this.pinOwner(allowed[0]!);
    const started: Promise<void>[] = [];
    this.inodeTable?.subscribe((t) => {
      for (const s of this.threads) s.worker.postMessage({ inodeTable: t } satisfies InodeTableUpdate);
    });
    for (let i = 1; i < this.count && !this.stopping; i++) {
      let fd: number;
      try {
        fd = sys.fuseDevClone(this.device);
      } catch (e) {
        this.log.warn({ code: (e as { code?: string }).code }, `cannot clone the /dev/fuse connection: serving with ${i} thread(s)`);
        break;
      }
      const { port1, port2 } = new MessageChannel();
      const data: ThreadData = {
        index: i, fd, cpu: allowed[i % allowed.length]!, negotiated, tables: this.tables, fs: this.fsOptions, stats: this.stats.buffer as SharedArrayBuffer,
        handedOps: this.handedOps.buffer,
        gate: this.gate.buffer as SharedArrayBuffer, port: port2, back: new SharedArrayBuffer(8), logLevel: this.log.level, ring, hotMs: this.hotMs,
        inodeTable: this.inodeTable?.current ?? null, aside: this.aside.buffer as SharedArrayBuffer,
      };
      const worker = new Worker(new URL('./thread-worker.js', import.meta.url), { workerData: data, transferList: [port2] });
      let ready!: () => void;
      started.push(new Promise<void>((r) => (ready = r)));
      const ended = new Promise<void>((resolve) => {
        worker.on('exit', () => {
          ready();
          resolve();
        });
      });
      // a thread that fails takes the requests it had read with it: their callers would wait
      // forever, so the whole server stops, as a C server's crash in one of its threads would
      worker.on('error', (e) => {
        this.log.error({ err: e, thread: i }, `serving thread ${i} failed (bug)`);
        this.onFatal(`serving thread ${i} failed: ${e.message}`);
      });
      const served: Served = { worker, fd, port: port1, back: new Int32Array(data.back), ended, strayRun: 0 };
      port1.on('message', (m: HandOver) => this.handOverMessage(m, served));
      this.threads.push(served);
      worker.on('message', (m: ThreadReady) => {
        if (m?.ready !== true) return;
        for (const q of m.qids) {
          covered.add(q);
          this.byQueue.set(q, served);
        }
        ready();
      });
    }
    // a thread that neither starts nor fails is not waited for (the owner serves what it would)
    let late: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(started), new Promise<void>((r) => (late = setTimeout(r, START_MS)))]);
    clearTimeout(late);
    this.log.info({ threads: 1 + this.threads.length }, `serving with ${1 + this.threads.length} threads`);
    return covered;
  }

  /**
   * Over io_uring, each queue is served on its CPU: the other threads are bound to theirs, and the
   * owner, which serves the first CPU's queue, to that one. The libuv pool is started first, so
   * that its threads (started by the first async call, inheriting the caller's affinity) keep
   * every CPU.
   */
  private async pinOwner(cpu: number): Promise<void> {
    await access('/');
    try {
      sys.pinThread(cpu);
      this.ownerCpu = cpu;
    } catch (e) {
      this.log.warn({ cpu, code: (e as { code?: string }).code }, 'cannot bind the owner to its CPU');
    }
  }

  /** Over io_uring: the CPU the owner is bound to (its queue's), or -1 */
  private ownerCpu = -1;

  /**
   * Over io_uring, after the owner's ring committed a reply to a request of queue `qid`: its
   * caller runs on that queue's CPU. One on the owner's own CPU is woken here and runs as soon as
   * the owner stops, and its next request reaches this ring from this CPU: the owner sleeps at
   * once, since a window spent turning the loop would be that caller's CPU time. Side by side,
   * 3 rounds: a cold find (ext4) on that CPU 0.50-0.57 -> 0.49-0.53 s, a tar -x (tmpfs) there
   * 2.35-2.46 -> 2.30-2.33 s; unpinned 0.56-0.63 -> 0.55-0.61 s and 3.43-3.68 -> 3.44-3.48 s. A
   * caller on another CPU (an entry that followed a request here) is what the window is for
   * (stayAwake).
   */
  committed(qid: number): void {
    if (qid !== this.ownerCpu) this.stayAwake();
  }

  /** Over io_uring: the owner's ring, through which it answers requests handed over from other threads' rings. */
  private ring: RingSession | null = null;
  /** the thread that registered each ring queue (ThreadReady) */
  private readonly byQueue = new Map<number, Served>();

  attachRing(ring: RingSession): void {
    this.ring = ring;
  }

  /**
   * The owner's ring read a request of another thread's queue: that thread's entry came to the
   * owner with the last request the owner committed (a reply the waiting thread gave up on,
   * ReplyBack; a large READ). The kernel gives a queue's most recently committed entry its next
   * request, so the entry stays with whoever commits it: kept here for good, every later request
   * of a caller on that CPU reached the owner's ring and was answered from the other CPU (a client
   * on CPU 1 lstat-ing known names after one long directory listing: 46 -> 160 us per lstat for
   * the rest of the mount's life). So a request that thread has a handler for (THREAD_OPS) goes to
   * it, which serves it on its CPU (or hands it back, ReplyBack) and commits it through its own
   * ring: the entry goes home. A READ or WRITE goes at once; the others once STRAY_RUN of them came
   * in a row. The owner's own work is served here, where it is read: sent home, it would only come
   * back through ReplyBack, and a lone GETATTR between directory reads (du) sent each entry home
   * to bring the next OPENDIR and READDIR back by that longer way (du on the other CPU 0.30 ->
   * 0.37-0.39 s when the first one went home, 0.28-0.31 s with STRAY_RUN 4). A large READ
   * (FAR_READ) goes the other way: one of another thread's queue is served here, one of the
   * owner's own queues goes to a thread bound to another CPU. True when it was handed over.
   */
  routeRing(req: Buffer, entry: number, qid: number): boolean {
    if (req.length < 8) return false;
    const mine = this.byQueue.get(qid);
    let t: Served | undefined = mine;
    if (farRead(req)) {
      if (mine !== undefined) return false;
      for (const [q, other] of this.byQueue) {
        if (q !== qid) {
          t = other;
          this.farReads++;
          break;
        }
      }
    } else {
      if (mine === undefined) return false;
      const op = req.readUInt32LE(4);
      if (!THREAD_OPS.has(op)) {
        mine.strayRun = 0;
        return false;
      }
      if (op !== Op.READ && op !== Op.WRITE && ++mine.strayRun < STRAY_RUN) return false;
      mine.strayRun = 0;
      this.sentHome++;
    }
    if (t === undefined) return false;
    const copy = new ArrayBuffer(req.length);
    new Uint8Array(copy).set(req);
    t.port.postMessage({ entry, req: copy } satisfies RingHandOver, [copy]);
    return true;
  }

  /** large READs of the owner's queues it handed to a thread bound to another CPU (FAR_READ) */
  private farReads = 0;
  /** requests on another thread's entries the owner's ring read and sent home with them (routeRing) */
  private sentHome = 0;
  /** replies to ring hand-overs the waiting thread took (ReplyBack), and those the owner committed */
  private givenBack = 0;
  private committedHere = 0;

  /** A hand-over a thread posted: clone bytes, a ring entry's request, or one the thread answered. */
  private handOverMessage(m: HandOver, t: Served): void {
    if (m instanceof ArrayBuffer) this.handOver(Buffer.from(m), t);
    else if ('answered' in m) this.serveAnswered(Buffer.from(m.req));
    else this.handOver(Buffer.from(m.req), t, m.entry);
  }

  /** A request the thread already answered (ANSWERED_AT_ONCE): served, its reply dropped. */
  private serveAnswered(req: Buffer): void {
    this.owner.handle(req).then((reply) => {
      if (reply !== null) this.owner.recycle?.(reply);
    }, (e: unknown) => this.once.error('handover-rejected', { err: e }, 'protocol server rejected a request (bug)'));
  }

  /**
   * A request another thread read and did not serve: answered here, on that thread's clone; or,
   * when it came from a ring (entry), given back to that thread if it still waits (ReplyBack),
   * else through the owner's ring.
   */
  private handOver(req: Buffer, t: Served, entry?: number): void {
    const fd = t.fd;
    this.owner.handle(req, entry !== undefined ? entryIo(req, entry) : undefined).then((reply) => {
      if (entry !== undefined) {
        // no reply (a malformed request): the entry still needs an answer
        const out = reply ?? (req.length >= 16 ? encodeError(req.readBigUInt64LE(8), E.EIO) : null);
        if (out !== null) {
          if (giveBack(t.back, entry, out, () => entryReplySpace(entry))) {
            this.givenBack++;
            this.owner.recycle?.(out);
          } else {
            this.committedHere++;
            this.ring?.commit(entry, out);
          }
        }
        this.stayAwake();
        return;
      }
      if (reply === null) return;
      try {
        sys.pwrite(fd, reply, 0, reply.length, -1);
      } catch (e) {
        const code = (e as { code?: string }).code;
        // interrupted and gone, or the connection ended
        if (code !== 'ENOENT' && code !== 'ENODEV' && code !== 'EBADF') {
          this.once.error(`handover-${code}`, { code }, `writing a reply on a serving thread's channel failed (${code})`);
        }
      }
      this.owner.recycle?.(reply);
      this.stayAwake();
    }, (e: unknown) => this.once.error('handover-rejected', { err: e }, 'protocol server rejected a request (bug)'));
  }

  /**
   * After answering a request handed over, look for the next one for HOT_MS without sleeping (the
   * event loop turns without blocking, sys.loopHot, so the owner's own device and ring are read at
   * once too): a client that waits for each answer sends its next request within tens of
   * microseconds, and a wake-up of a sleeping thread on another CPU costs about as much on this VM.
   * The window is a uv_idle handle, not JS (hand-overs come through each port's own event): a loop
   * of immediates that asked each port every turn made garbage enough to double the owner's
   * scavenges, and a scavenge under a thread waiting for a reply (ReplyBack) outlasted its wait. Measured side by
   * side (scripts/bench, 2 threads, 0 against 200 us): create+stat+unlink 9.76 -> 6.74 s, tar -x
   * 7.47 -> 5.80 s, cold find 0.59 -> 0.46 s, git status 0.26 -> 0.22 s, server CPU 0.9-1.2x.
   * Over io_uring the owner also calls it after each reply its own ring commits: with the entries
   * of the other threads' queues that follow the requests it answers, its ring is where their
   * callers' next requests arrive (2 threads, side by side: create+stat+unlink 8.93 -> 7.41 s,
   * tar -x 8.15 -> 6.26 s).
   */
  stayAwake(): void {
    if (!this.stopping) keepPolling(this.hotMs);
  }

  /** the window of stayAwake (--poll-us); 0: the owner sleeps at once */
  hotMs = HOT_MS;

  /**
   * Requests reach the owner in another order than the kernel queued them when another thread
   * read the earlier one: it hands it over a few microseconds later. Where that order shows (a
   * flock refused because the RELEASE that drops the conflicting lock is still on its way: the
   * kernel sends RELEASE without waiting for it), the owner calls this: it waits (at most
   * SETTLE_MS) until every request the other threads hold is served or handed over, and handles
   * what was handed over before returning (each up to its first wait, as RELEASE's whole work).
   */
  settle(): void {
    const deadline = Date.now() + SETTLE_MS;
    for (let i = 1; i <= this.threads.length; i++) {
      const seen = Atomics.load(this.gate, i * 2 + 1);
      while (Atomics.load(this.gate, i * 2) !== 0 && Atomics.load(this.gate, i * 2 + 1) === seen) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        Atomics.wait(this.gate, i * 2, 1, left);
      }
    }
    this.takeHandedOver();
  }

  /** Handle, now, every request the other threads handed over and the event loop has not delivered yet. */
  private takeHandedOver(): void {
    for (const t of this.threads) {
      for (let m = receiveMessageOnPort(t.port); m !== undefined; m = receiveMessageOnPort(t.port)) {
        this.handOverMessage(m.message as HandOver, t);
      }
    }
  }

  /**
   * Per-thread numbers for the stats file: requests read, served there, handed to the owner; of
   * those served, LOOKUPs answered ENOENT and UNLINKs and RMDIRs done there; of those handed over,
   * RELEASEs answered there (ANSWERED_AT_ONCE) and large READs of its own CPU's queue (FAR_READ), and
   * all of them by opcode name. The owner's row first; its own are not counted apart. ringFarReads:
   * the large READs of the owner's queues it handed to another thread.
   */
  /**
   * On /dev/fuse clones, the owner stops reading the device for ASIDE_MS after each large READ it
   * reads (DevFuseSession.stepBack), and the other threads serve a streaming reader alone. Every
   * reader of a clone waits on the connection's one queue, so each request woke both threads and
   * both served the stream's READs: side by side (fio, 1 GiB, bs=1M, 3 runs each, 2026-12-06),
   * one thread read 1,869-2,120 MiB/s, two threads 1,436-1,620; with the owner reading nothing,
   * the other thread alone 1,816-2,116; standing aside 10 ms, 1,796-1,981 (2 ms: 1,554-1,869),
   * the owner then reading 155 of 12,306 READs. What it needs meanwhile the other threads hand
   * it, as always. Over io_uring (each CPU's queue has its thread) and with no other thread, never.
   */
  streamReader(): { ms: number; when: (req: Buffer, n: number) => boolean; turn: AsideTurn } | null {
    return this.standsAside() ? { ms: ASIDE_MS, when: farRead, turn: asideTurn(this.aside, 0) } : null;
  }

  /**
   * On /dev/fuse clones, while another thread stands aside (it read a request only the owner
   * serves, HANDOVER_ASIDE_MS), the owner polls after its replies as one serving thread does.
   */
  ownerPoll(): (() => number) | null {
    if (!this.standsAside()) return null;
    // the word holds the index + 1 of the reader aside: above 1, a thread other than the owner
    return () => (Atomics.load(this.aside, 0) > 1 ? this.hotMs : 0);
  }

  /** Readers stand aside on clones only, with another thread to read (and not in the tests that turn it off). */
  private standsAside(): boolean {
    return this.ring === null && this.threads.length > 0 && !NO_ASIDE;
  }

  /** which reader stands aside (asideTurn) */
  private readonly aside = new Int32Array(new SharedArrayBuffer(4));

  counters(): {
    threads: number;
    perThread: Array<{
      requests: number; served: number; handedOver: number; negativeLookups: number; positiveLookups: number; removals: number; answeredAtOnce: number; farReads: number;
      /** times it stopped reading the device for a while (the owner: streamReader; the others: HANDOVER_ASIDE_MS) */
      stoodAside: number;
      handedOverByOp: Record<string, number>;
    }>;
    ringGivenBack: number; ringCommittedByOwner: number; ringFarReads: number; ringSentHome: number;
  } {
    const s = this.stats;
    const own = this.ownerRequests();
    const perThread = [{ requests: own, served: own, handedOver: 0, negativeLookups: 0, positiveLookups: 0, removals: 0, answeredAtOnce: 0, farReads: 0, stoodAside: this.ownerAside(), handedOverByOp: {} }];
    for (let i = 1; i <= this.threads.length; i++) {
      const r = i * THREAD_STATS;
      perThread.push({
        requests: s[r]!, served: s[r + 1]!, handedOver: s[r + 2]!, negativeLookups: s[r + 3]!, positiveLookups: s[r + 7]!, removals: s[r + 5]!, answeredAtOnce: s[r + 4]!,
        farReads: s[r + 6]!, stoodAside: s[r + 8]!, handedOverByOp: this.handedOps.byName(i),
      });
    }
    return { threads: perThread.length, perThread, ringGivenBack: this.givenBack, ringCommittedByOwner: this.committedHere, ringFarReads: this.farReads, ringSentHome: this.sentHome };
  }


  /**
   * Once the connection ended (each thread then reads ENODEV and exits), or at once when stopping
   * early: end the threads and close their clones.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.threads.map(async (t) => {
      const late = setTimeout(() => void t.worker.terminate(), 2000);
      await t.ended;
      clearTimeout(late);
      try {
        sys.close(t.fd);
      } catch {
        /* closed */
      }
      t.port.close();
    }));
    this.threads.length = 0;
  }
}
