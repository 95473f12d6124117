/**
 * The data plane of one running request queue: on each kick, take the chains the guest made
 * available, hand each request's bytes to the protocol server, write its reply into the chain's
 * device-writable buffers and put the chain on the used ring, then signal the guest. The same code
 * runs a queue on the connection's thread (connection.ts) and on a serving thread of its own
 * (queue-worker.ts); what differs (in-flight records, a supervisor's drain, where a request is
 * served) is the QueueHost's.
 *
 * Trust: the ring is the guest's. SplitQueue checks every index and descriptor; a broken chain
 * breaks the queue (QueueHost.broken), never the process.
 */
import { InHeader, OutHeader, WriteIn } from '../../fuse/abi.js';
import type { TransportIo } from '../../fuse/codec.js';
import { Op } from '../../fuse/opcodes.js';
import type { LogOnce } from '../../log.js';
import { sys, type MappedSeg } from '../../sys/syscalls.js';
import { ChainWriter, SplitQueue, readAll, sliceViews, type Chain } from './vring.js';

/** What a running queue needs from whoever runs it. */
export interface QueueHost {
  /** serve one request: its reply, or null for none (a malformed request, FORGET) */
  handle(req: Buffer, io?: TransportIo): Promise<Buffer | null>;
  /** a reply's buffer, once written into guest memory */
  recycle?(reply: Buffer): void;
  /** while true, no chain is taken (a supervised worker draining) */
  holding(): boolean;
  /** a chain was taken, before its request runs (in-flight records) */
  taken(queue: number, head: number, lastAvail: number): void;
  /** its used entry is about to be written, and was written */
  answering(queue: number, head: number, lastUsed: number): void;
  answered(queue: number, head: number): void;
  /** a taken chain is done with: answered, or dropped because its queue stopped */
  settled(): void;
  /** a request's bytes before it runs (a supervised worker forwards INIT) */
  request?(req: Buffer): void;
  /** called before a reply reaches guest memory */
  beforeReply?(): void;
  /** the guest broke the queue: it is served no more */
  broken(queue: number, why: string): void;
  /** the connection cannot go on (the VMM's call fd refuses writes) */
  fail(why: string): void;
  /** run a callback of the event loop; an exception in it ends the connection */
  guard(what: string, fn: () => void): void;
  readonly counters: { requests: number; replies: number; signals: number };
  readonly once: LogOnce;
}

/** fuse_in_header and fuse_write_in: what a WRITE copies; its data stays in guest memory */
const WRITE_HEADERS = InHeader.SIZE + WriteIn.SIZE;
/** chains taken per turn of the event loop before other events get theirs */
const BATCH = 256;
/** Views of mapped guest memory as the addon takes them. */
const mapped = (views: readonly Uint8Array[]): MappedSeg[] => views.map((v): MappedSeg => [v.buffer as ArrayBuffer, v.byteOffset, v.byteLength]);

/**
 * The request bytes to hand over, and the guest memory READ and WRITE data moves through
 * directly: a WRITE's payload stays in the guest's pages (only its headers are copied), a READ
 * gets the reply space after the out header. Other requests are copied whole. `req` is null when
 * the chain's memory was unmapped under it.
 */
export function splitChain(c: Chain): { req: Buffer | null; io?: TransportIo } {
  // the opcode without a copy when the header is in one buffer (Linux puts it in its own)
  const first = c.readable[0];
  const inOne = first !== undefined && first.byteLength >= InHeader.SIZE;
  const head = inOne ? null : readAll(sliceViews(c.readable, 0, InHeader.SIZE));
  const view = inOne ? first : head;
  if (view === null || view.byteLength < InHeader.SIZE) return { req: readAll(c.readable) };
  const dv = new DataView(view.buffer, view.byteOffset, InHeader.SIZE);
  const opcode = dv.getUint32(InHeader.opcode, true);
  if (opcode === Op.WRITE && c.readableBytes > WRITE_HEADERS && dv.getUint16(InHeader.total_extlen, true) === 0) {
    const payload = sliceViews(c.readable, WRITE_HEADERS);
    return { req: readAll(sliceViews(c.readable, 0, WRITE_HEADERS)), io: { payload: mapped(payload), payloadBytes: c.readableBytes - WRITE_HEADERS } };
  }
  const req = readAll(c.readable);
  if (opcode === Op.READ && c.writableBytes > OutHeader.SIZE) return { req, io: { readInto: mapped(sliceViews(c.writable, OutHeader.SIZE)) } };
  return { req };
}

export class QueueRunner {
  private poll: unknown = null;
  private stopped = false;
  private signalPending = false;
  private servePending = false;

  constructor(
    /** the vring index */
    readonly index: number,
    private ring: SplitQueue,
    private kickFd: number,
    /** the VMM's call eventfd (non-blocking), -1 for none */
    public callFd: number,
    private readonly host: QueueHost,
  ) {}

  get lastAvailIdx(): number {
    return this.ring.lastAvailIdx;
  }

  /** The chain at `head` (the recovery of a predecessor's taken chains). */
  chainAt(head: number): ReturnType<SplitQueue['chainAt']> {
    return this.ring.chainAt(head);
  }

  get lastUsedIdx(): number {
    return this.ring.lastUsedIdx;
  }

  /** Serve on each kick, and now: requests posted before the kick fd arrived are not lost. False when the kick fd cannot be polled. */
  start(): boolean {
    if (!this.watchKick()) return false;
    this.scheduleServe();
    return true;
  }

  /** Look at the ring again (a queue enabled again, a supervisor's drain ended). */
  wake(): void {
    this.scheduleServe();
  }

  /** A new kick fd (SET_VRING_KICK while running). */
  setKick(fd: number): boolean {
    this.unwatchKick();
    this.kickFd = fd;
    return this.stopped || this.watchKick();
  }

  /** The ring rebuilt over a new memory table, where it was: chains taken before are answered into it. */
  replaceRing(ring: SplitQueue): void {
    this.ring = ring;
  }

  /**
   * Stop for good: no more kicks served, and replies of chains taken before belong to nobody.
   * Returns where the queue stopped (GET_VRING_BASE's answer, and where it resumes).
   */
  stop(): number {
    this.unwatchKick();
    this.stopped = true;
    return this.ring.lastAvailIdx;
  }

  /**
   * Serve the queue on each kick; false (the queue broken) when the kick fd cannot be polled (a
   * regular file, say). uv_poll makes the fd non-blocking. One read resets an eventfd's counter; a
   * loop until EAGAIN would spin for ever on a semaphore-mode eventfd the VMM filled (the poll is
   * level-triggered: a count left over fires it again next turn).
   */
  private watchKick(): boolean {
    if (this.poll || this.kickFd < 0) return true;
    const fd = this.kickFd;
    try {
      this.poll = sys.pollStart(fd, () => this.host.guard(`queue ${this.index}`, () => {
        // reset the counter first: a kick arriving while we serve re-arms the poll
        try {
          sys.eventfdRead(fd);
        } catch (e) {
          this.host.broken(this.index, `its kick fd cannot be read (${(e as Error).message})`);
          return;
        }
        this.serve();
      }));
    } catch (e) {
      this.host.broken(this.index, `its kick fd cannot be polled (${(e as Error).message})`);
      return false;
    }
    return true;
  }

  private unwatchKick(): void {
    if (this.poll) sys.pollStop(this.poll);
    this.poll = null;
  }

  private scheduleServe(): void {
    if (this.servePending || this.stopped) return;
    this.servePending = true;
    setImmediate(() => {
      this.servePending = false;
      this.host.guard(`queue ${this.index}`, () => this.serve());
    });
  }

  /** Take the available chains; with EVENT_IDX, publish how far we got and look once more. */
  private serve(): void {
    if (this.stopped || this.host.holding()) return;
    const ring = this.ring;
    for (let n = 0; n < BATCH; n++) {
      let c = ring.pop();
      if (c === null) {
        // ask for a kick at the next index, then look again: a chain posted in between is taken now
        ring.updateAvailEvent();
        c = ring.pop();
        if (c === null) return;
      }
      if ('broken' in c) {
        this.host.broken(this.index, c.broken);
        return;
      }
      // recorded before the request runs: a successor must know it was taken
      this.host.taken(this.index, c.head, ring.lastAvailIdx);
      this.dispatch(c);
    }
    // more than a batch: go on after other events had their turn
    this.scheduleServe();
  }

  private dispatch(c: Chain): void {
    this.host.counters.requests++;
    const { req, io } = splitChain(c);
    if (req === null) {
      // its memory was unmapped under it: nothing to serve, the buffers go back empty
      this.complete(c, null);
      return;
    }
    this.host.request?.(req);
    this.host.handle(req, io).then(
      (rep) => this.host.guard(`queue ${this.index}`, () => this.complete(c, rep, io?.readInto ? c.writableBytes : 0)),
      () => this.host.guard(`queue ${this.index}`, () => this.complete(c, null)),
    );
  }

  /** `readRoom`: a READ served into guest memory (splitChain): the reply header counts data already in place, up to this room. */
  complete(c: Chain, rep: Buffer | null, readRoom = 0): void {
    const host = this.host;
    // the queue was stopped meanwhile: the chain is not ours any more
    if (this.stopped) {
      if (rep) host.recycle?.(rep);
      host.settled();
      return;
    }
    const ring = this.ring;
    let written = 0;
    if (rep) {
      host.beforeReply?.();
      const w = new ChainWriter(c.writable);
      written = w.write(rep);
      host.recycle?.(rep);
      const claimed = rep.length === OutHeader.SIZE ? rep.readUInt32LE(OutHeader.len) : 0;
      if (readRoom > 0 && written === OutHeader.SIZE && claimed > OutHeader.SIZE && claimed <= readRoom) written = claimed;
      else if (written < rep.length) {
        host.once.warn(`short-${this.index}`, { queue: this.index, reply: rep.length, room: c.writableBytes }, "vhost-user: a reply did not fit the guest's buffers; truncated");
      }
    }
    host.answering(this.index, c.head, ring.lastUsedIdx);
    const broken = ring.pushUsed(c.head, written);
    host.answered(this.index, c.head);
    host.settled();
    if (broken) {
      host.broken(this.index, broken.broken);
      return;
    }
    host.counters.replies++;
    if (!this.signalPending) {
      this.signalPending = true;
      // one interrupt for the replies completed in the same turn
      queueMicrotask(() => host.guard(`queue ${this.index}`, () => this.signal()));
    }
  }

  private signal(): void {
    this.signalPending = false;
    if (this.stopped || this.callFd < 0) return;
    if (this.ring.shouldNotify()) {
      try {
        sys.eventfdWrite(this.callFd, 1);
      } catch (e) {
        this.host.fail(`the call fd of queue ${this.index} refuses writes (${(e as Error).message})`);
        return;
      }
      this.host.counters.signals++;
    }
  }
}
