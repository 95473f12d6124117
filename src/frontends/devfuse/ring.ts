/**
 * FUSE over io_uring (--io-uring): the kernel hands each request to a ring entry of the queue of the
 * CPU its caller runs on, and the reply goes back with the command that fetches that entry's next
 * request (native/src/uring.c). A RingSession serves one thread's ring: requests in /dev/fuse's
 * layout to a RequestHandler, each reply committed through the ring of the thread that answered
 * it (the entry then follows that thread). INIT, FORGET, INTERRUPT and notifications stay on
 * /dev/fuse (the kernel's rule), so the device sessions keep reading beside the rings.
 *
 * Why: with a thread bound to each CPU serving that CPU's queue, a request is read on the caller's
 * CPU, and what that thread serves itself is answered there, with no wake-up of a thread elsewhere
 * (tools/channels/README.md: 14-16 us per stat round trip pair against 77-90 us when the single
 * serving thread runs on the other CPU, on this VM). With one thread serving every queue that
 * gain does not exist, which is why --io-uring auto needs more than one (README, "FUSE over io_uring").
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { E } from '../../errors.js';
import { encodeError, type TransportIo } from '../../fuse/codec.js';
import { Op } from '../../fuse/opcodes.js';
import { SlabPool } from '../../fuse/slab-pool.js';
import { LogOnce } from '../../log.js';
import { sys, type RingHandle } from '../../sys/syscalls.js';
import type { RequestHandler } from './session.js';

/** Ring entries per queue and thread: how many requests from one CPU one thread serves at once. */
export const RING_DEPTH = 8;

/** What a thread needs to register its part of the rings. */
export interface RingPlan {
  /** the FUSE queues (CPU numbers) this thread registers entries for */
  qids: number[];
  perQueue: number;
  /** bytes of each entry's payload buffer (ProtocolServer.ringSettings) */
  payloadSize: number;
}

/** The protocol server, as a ring serves it: with the transport's memory for a READ's reply. */
export interface RingServer extends RequestHandler {
  handle(req: Buffer, io?: TransportIo): Promise<Buffer | null>;
}

/** What the rings' RequestHandler is also told: the entry a request came from, and its queue (its caller's CPU). */
export interface RingRequests extends RequestHandler {
  /**
   * A reply, or null when the handler keeps the entry: whichever thread answers it then commits it
   * through its own ring (RingSession.commit), and the entry's next request comes to that ring.
   */
  handle(req: Buffer, entry?: number, qid?: number, io?: TransportIo): Promise<Buffer | null>;
  /** told after each reply this ring committed, with its request */
  answered?(req: Buffer, qid: number): void;
}

const LEN_SHIFT = 2 ** 22;
const MAX_ENTRIES = 16384;
const ENOTCONN = 107;
const ECANCELED = 125;
/** Requests above this size (WRITE payloads) are served from a slab, as on the device. */
const LARGE_REQUEST = 64 * 1024;

/**
 * The FUSE queues of this machine: one per possible CPU (/sys/devices/system/cpu/possible), not
 * per online one; every queue needs an entry before the kernel serves anything over the ring.
 */
export function possibleCpus(): number {
  try {
    const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
    let top = -1;
    for (const part of text.split(',')) {
      const last = Number(part.split('-').pop());
      if (Number.isInteger(last) && last > top) top = last;
    }
    if (top >= 0 && top < 65536) return top + 1;
  } catch {
    /* no sysfs */
  }
  return 1;
}

/** Whether this process can make an io_uring at all (kernel.io_uring_disabled, seccomp, an old kernel): null, or why not. */
export function ringUnavailable(): string | null {
  try {
    sys.uringProbe();
    return null;
  } catch (e) {
    return (e as { code?: string }).code ?? 'EIO';
  }
}

/**
 * The thread that runs the filesystem serves its ring entries with its protocol server as is: a
 * request without a reply cannot come over the ring (FORGET and INTERRUPT stay on /dev/fuse), and
 * should one (a malformed request) it is answered EIO, since an entry left unanswered holds its
 * caller forever.
 */
export function ringAnswers(server: RingServer): RingRequests {
  return {
    bufferSize: () => server.bufferSize(),
    reuseReplies: () => server.reuseReplies?.(),
    recycle: (reply) => server.recycle?.(reply),
    handle: async (req, _entry, _qid, io) => (await server.handle(req, io)) ?? encodeError(req.length >= 16 ? req.readBigUInt64LE(8) : 0n, E.EIO),
  };
}

/** Per entry, this thread's view of its reply space (uringReplySpace), made on first use; entries live as long as the process. */
const replySpaces = new Map<number, Buffer>();
export function entryReplySpace(entry: number): Buffer {
  let b = replySpaces.get(entry);
  if (b === undefined) replySpaces.set(entry, (b = sys.uringReplySpace(entry)));
  return b;
}

export class RingSession {
  private readonly once: LogOnce;
  private reader: unknown = null;
  private closed = false;
  private resolveDone!: () => void;
  private readonly ring: RingHandle;
  private size = 0;
  /** requests read from this ring */
  requests = 0;
  /** the queues this thread registered entries for */
  readonly qids: number[] = [];
  /** Resolves once the session is closed. */
  readonly done: Promise<void>;

  constructor(
    device: number,
    private readonly handler: RingRequests,
    private readonly log: Logger,
  ) {
    this.once = new LogOnce(log);
    this.done = new Promise((r) => (this.resolveDone = r));
    // no entries yet: a ring to answer through (entries handed over by other threads) and to register on
    this.ring = sys.uringCreate(device);
  }

  /** Register entries for these queues through this ring (after INIT was answered: the kernel refuses it before). */
  register(plan: RingPlan): void {
    if (plan.qids.length === 0) return;
    sys.uringRegister(this.ring, plan.qids, plan.perQueue, plan.payloadSize);
    this.qids.push(...plan.qids);
    this.size = Math.max(this.size, 40 + 128 + plan.payloadSize);
  }

  /** Read completions on the event loop; payloadSize: the largest request an entry (of any thread) can bring. */
  start(payloadSize: number): void {
    const size = Math.max(this.handler.bufferSize(), this.size, 40 + 128 + payloadSize);
    const slabs = new SlabPool(size);
    let buf = slabs.take();
    const gate = this.handler.reading?.bind(this.handler);
    this.handler.reuseReplies?.();
    this.reader = sys.pollStart(sys.uringFd(this.ring), () => {
      for (let i = 0; i < 64 && this.reader !== null; i++) {
        gate?.(true);
        const v = sys.uringNext(this.ring, buf);
        if (v <= 0) gate?.(false);
        if (v === 0) return;
        if (v < 0) {
          this.entryEnded(Math.floor(-v / 4096), -v % 4096);
          continue;
        }
        const tag = Math.floor(v / LEN_SHIFT);
        const n = v % LEN_SHIFT;
        let req: Buffer;
        let give: (() => void) | undefined;
        if (n > LARGE_REQUEST) {
          const held = buf;
          buf = slabs.take();
          req = held.subarray(0, n);
          give = () => slabs.give(held);
        } else {
          req = Buffer.allocUnsafe(n);
          buf.copy(req, 0, 0, n);
        }
        this.dispatch(tag % MAX_ENTRIES, Math.floor(tag / MAX_ENTRIES), req, give);
      }
    });
  }

  /** Per entry, the TransportIo over its reply space. */
  private readonly spaces = new Map<number, TransportIo>();

  private dispatch(entry: number, qid: number, req: Buffer, give?: () => void): void {
    this.requests++;
    // a READ's reply is built in the entry itself: committed without copying the data
    let io: TransportIo | undefined;
    if (req.readUInt32LE(4) === Op.READ) {
      io = this.spaces.get(entry);
      if (io === undefined) this.spaces.set(entry, (io = { replySpace: entryReplySpace(entry) }));
    }
    this.handler.handle(req, entry, qid, io).then((reply) => {
      give?.();
      // null: another thread answers it (a hand-over)
      if (reply === null) return;
      this.commit(entry, reply);
      this.handler.answered?.(req, qid);
    }, (e: unknown) => {
      give?.();
      this.once.error('handle-rejected', { err: e }, 'protocol server rejected a request (bug)');
      // an entry left unanswered would hold its request (and the caller) forever
      if (req.length >= 16) this.commit(entry, encodeError(req.readBigUInt64LE(8), E.EIO));
    });
  }

  /** An entry's reply (from whichever ring it came): committed through this ring, which gets the entry's next request. */
  commit(entry: number, reply: Buffer): void {
    if (!this.closed) {
      try {
        sys.uringCommit(this.ring, entry, reply);
      } catch (e) {
        const code = (e as { code?: string }).code;
        // the connection ended under us: the entries complete with ENOTCONN
        if (code !== 'ENOTCONN' && code !== 'ECONNABORTED') {
          this.once.error(`commit-${code}`, { code, len: reply.length }, `committing a reply to the FUSE ring failed (${code ?? (e as Error).message})`);
        }
      }
    }
    this.handler.recycle?.(reply);
  }

  private entryEnded(entry: number, errno: number): void {
    // ENOTCONN: unmounted or aborted; ECANCELED: the ring is going away. Anything else is a
    // REGISTER the kernel refused, after which it serves the connection over /dev/fuse.
    if (errno !== ENOTCONN && errno !== ECANCELED) {
      this.once.error(`entry-${errno}`, { errno, entry }, `the kernel refused a FUSE ring entry (errno ${errno}): requests go through /dev/fuse`);
    }
  }

  /** Stop reading and release the ring (after the connection ended: see uringClose). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reader !== null) sys.pollStop(this.reader);
    this.reader = null;
    try {
      sys.uringClose(this.ring);
    } catch {
      /* closed */
    }
    this.log.debug({ qids: this.qids }, 'FUSE ring closed');
    this.resolveDone();
  }
}
