/**
 * One vhost-user connection (the VMM, e.g. QEMU, on an AF_UNIX stream socket): the control
 * messages that describe guest memory and the virtqueues, and the serving of those queues. Every
 * request a guest puts on a request queue is a FUSE request: its device-readable bytes go to the
 * protocol server (the same one /dev/fuse uses) and the reply is written into the chain's
 * device-writable buffers. No protocol parsing and no filesystem logic here.
 *
 * Trust: the VMM and the guest are untrusted. The codecs (messages.ts, vring.ts, guest-memory.ts)
 * check every field before use and return error results; this file turns a bad message into a
 * failure reply or the end of the connection, and a bad chain into a broken queue, each with one
 * log line. Nothing here throws out to the event loop: every callback is wrapped.
 *
 * Threads: everything runs on the event loop. The socket and the kick eventfds are non-blocking
 * and watched with uv_poll; no thread sits in a read.
 */
import type { Logger } from 'pino';
import { E } from '../../errors.js';
import { InHeader, OutHeader, WriteIn } from '../../fuse/abi.js';
import type { TransportIo } from '../../fuse/codec.js';
import { encodeError } from '../../fuse/codec.js';
import { Op, opcodeRow } from '../../fuse/opcodes.js';
import { LogOnce } from '../../log.js';
import { AT_EMPTY_PATH, F_GETFL, F_SETFL, O_NONBLOCK, PAGE_SIZE, S_IFMT, S_IFREG } from '../../sys/constants.js';
import { statAt, sys, type MappedSeg } from '../../sys/syscalls.js';
import { GuestMemory, type MemoryRegion } from './guest-memory.js';
import {
  Feature, MessageReader, ProtocolFeature, Req, decodeMessage, encodeAck, encodeReply, encodeStateReply, encodeU64Reply, featureMask,
  messageFds, type RawMessage, type RegionDesc, type VhostMessage,
} from './messages.js';
import { INFLIGHT_BYTES, InflightTable } from './inflight.js';
import { ChainWriter, SplitQueue, readAll, sliceViews, type Chain } from './vring.js';

/** What the connection needs from the protocol server (src/fuse/protocol-server.ts). */
export interface FuseRequestHandler {
  handle(req: Buffer, io?: TransportIo): Promise<Buffer | null>;
  reuseReplies?(): void;
  recycle?(reply: Buffer): void;
}

export interface ConnectionOptions {
  /** queues offered: 1 hiprio + this many request queues (QEMU's num-request-queues must not exceed it) */
  requestQueues: number;
  /** the largest request (FUSE header + WRITE payload) and reply space accepted; a longer chain breaks its queue */
  maxRequestBytes: number;
  /**
   * The peer is handlefs's supervisor relaying the VMM (src/frontends/supervisor/vhost-supervisor.ts),
   * not the VMM itself: it may also send the private messages below, and is told of INIT.
   */
  supervised?: boolean;
  /** called before a reply reaches the guest (a supervised worker streams the records it names first) */
  beforeReply?: () => void;
  /** the largest piece a region is mapped in (default just under 4 GiB; smaller in tests) */
  mapPieceBytes?: bigint;
  /**
   * The tag to show in the device's config space (virtiofsd --tag): offered with the CONFIG
   * protocol feature for VMMs that read it (GET_CONFIG); QEMU sets its own (tag=) and never asks.
   */
  tag?: string;
}

/**
 * Private requests between a supervisor and its worker, above every vhost-user request number.
 * INFLIGHT (supervisor -> worker, one fd): the shared in-flight table; u64 payload, bit 0: a
 * predecessor ran the queues (recover them when they start). INIT (worker -> supervisor): the FUSE
 * INIT request a guest sent, kept for a successor's protocol server. DRAIN (supervisor -> worker):
 * take no more chains; the u64 reply comes once every taken one is answered.
 */
export const Private = { INFLIGHT: 0x4846_0001, INIT: 0x4846_0002, DRAIN: 0x4846_0003 } as const;
const isPrivate = (request: number): boolean => request >= Private.INFLIGHT && request <= Private.DRAIN;

export type ConnectionEnd = { reason: 'closed' } | { reason: 'error'; message: string };

/** Virtio features offered: what the split-queue code implements, and no more. */
export const OFFERED_FEATURES = featureMask(
  Feature.VIRTIO_F_VERSION_1, Feature.VIRTIO_RING_F_INDIRECT_DESC, Feature.VIRTIO_RING_F_EVENT_IDX, Feature.VHOST_USER_F_PROTOCOL_FEATURES,
);
/** vhost-user protocol features offered: acknowledgements and memory slots (no MQ, no back-end channel, no logging). */
export const OFFERED_PROTOCOL_FEATURES = featureMask(ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIGURE_MEM_SLOTS);
const P_CONFIG = featureMask(ProtocolFeature.CONFIG);
/** virtio-fs's config space: u8 tag[36], le32 num_request_queues */
const TAG_BYTES = 36;
const F_PROTOCOL_FEATURES = featureMask(Feature.VHOST_USER_F_PROTOCOL_FEATURES);
const F_EVENT_IDX = featureMask(Feature.VIRTIO_RING_F_EVENT_IDX);
const F_INDIRECT = featureMask(Feature.VIRTIO_RING_F_INDIRECT_DESC);
const P_REPLY_ACK = featureMask(ProtocolFeature.REPLY_ACK);

/** recvmsg's fd room: the codec refuses a message with more than it allows (8) */
const RECV_FDS = 32;
const READ_CHUNK = 4096 + 12;
const PAGE_MASK = BigInt(PAGE_SIZE - 1);
/** GET_MAX_MEM_SLOTS: the regions a VMM may add (QEMU's most) */
const MAX_MEM_SLOTS = 32;
/** a region is mapped in pieces of at most this (page-aligned, below the 4 GiB an ArrayBuffer holds) */
const MAX_PIECE = (1n << 32n) - 65536n;

/** The pieces a region is mapped in: consecutive, each at most MAX_PIECE (`piece` smaller in tests). */
export function regionPieces(r: RegionDesc, piece = MAX_PIECE): RegionDesc[] {
  const out: RegionDesc[] = [];
  for (let off = 0n; off < r.size; off += piece) {
    const size = r.size - off < piece ? r.size - off : piece;
    out.push({ gpa: r.gpa + off, size, uva: r.uva + off, mmapOffset: r.mmapOffset + off });
  }
  return out;
}
/** fuse_in_header and fuse_write_in: what a WRITE copies; its data stays in guest memory */
const WRITE_HEADERS = InHeader.SIZE + WriteIn.SIZE;
/** Views of mapped guest memory as the addon takes them. */
const mapped = (views: readonly Uint8Array[]): MappedSeg[] => views.map((v): MappedSeg => [v.buffer as ArrayBuffer, v.byteOffset, v.byteLength]);
const EMPTY_NAME = Buffer.alloc(0);
/** chains taken per turn of the event loop before other events get theirs */
const BATCH = 256;

interface QueueState {
  index: number;
  num: number;
  base: number;
  addr: { desc: bigint; avail: bigint; used: bigint } | null;
  kickFd: number;
  callFd: number;
  errFd: number;
  enabled: boolean;
  ring: SplitQueue | null;
  /** bumped when the queue stops: replies of chains popped before belong to nobody */
  epoch: number;
  poll: unknown;
  broken: string | null;
  signalPending: boolean;
  servePending: boolean;
}

const closeQuietly = (fd: number | null | undefined): void => {
  if (fd === null || fd === undefined || fd < 0) return;
  try {
    sys.close(fd);
  } catch {
    /* already closed */
  }
};

const unmap = (r: MemoryRegion): void => sys.unmapShared(r.bytes.buffer as ArrayBuffer);

export class VhostUserConnection {
  private readonly memory = new GuestMemory();
  private readonly queues: QueueState[];
  private readonly reader = new MessageReader();
  private readonly rx = Buffer.alloc(READ_CHUNK);
  private features = 0n;
  private protocolFeatures = 0n;
  private socketPoll: unknown = null;
  private ended = false;
  /** scratch until a supervisor shares its table (INFLIGHT) */
  private inflight = new InflightTable(new Uint8Array(INFLIGHT_BYTES));
  private inflightMapping: ArrayBuffer | null = null;
  /** queues a predecessor ran: recovered when they start */
  private readonly recover = new Set<number>();
  private taken = 0;
  private draining: RawMessage | null = null;
  private endWith: (e: ConnectionEnd) => void = () => {};
  private readonly once: LogOnce;
  /** resolves when the VMM closed the socket or the connection failed; everything is released by then */
  readonly done: Promise<ConnectionEnd>;
  readonly counters = { requests: 0, replies: 0, signals: 0, brokenQueues: 0, badMessages: 0, recoveredRequests: 0 };

  constructor(
    private readonly fd: number,
    private readonly server: FuseRequestHandler,
    private readonly opts: ConnectionOptions,
    private readonly log: Logger,
  ) {
    this.once = new LogOnce(log);
    this.queues = Array.from({ length: 1 + opts.requestQueues }, (_, index) => ({
      index, num: 0, base: 0, addr: null, kickFd: -1, callFd: -1, errFd: -1, enabled: false, ring: null, epoch: 0, poll: null,
      broken: null, signalPending: false, servePending: false,
    }));
    this.done = new Promise((r) => (this.endWith = r));
    server.reuseReplies?.();
  }

  start(): void {
    this.socketPoll = sys.pollStart(this.fd, () => this.guard('socket', () => this.onSocket()));
  }

  /** End the connection from our side (shutdown): the VMM sees the socket close. */
  close(): void {
    this.finish({ reason: 'closed' });
  }

  private guard(what: string, fn: () => void): void {
    if (this.ended) return;
    try {
      fn();
    } catch (e) {
      this.log.error({ err: e, what }, 'vhost-user: internal error; closing the connection');
      this.finish({ reason: 'error', message: `internal error in ${what}: ${(e as Error).message}` });
    }
  }

  private onSocket(): void {
    for (let rounds = 0; rounds < 64 && !this.ended; rounds++) {
      const r = sys.recvMsg(this.fd, this.rx, 0, this.rx.length, RECV_FDS);
      if (r === null) return;
      if (r.truncated) {
        for (const f of r.fds) closeQuietly(f);
        this.fail('a message carried more file descriptors than vhost-user allows');
        return;
      }
      if (r.n === 0) {
        for (const f of r.fds) closeQuietly(f);
        this.finish({ reason: 'closed' });
        return;
      }
      const out = this.reader.feed(this.rx.subarray(0, r.n), r.fds);
      if ('fatal' in out) {
        for (const f of out.fds) closeQuietly(f);
        this.fail(`malformed message stream: ${out.fatal}`);
        return;
      }
      for (const m of out) {
        if (this.ended) for (const f of m.fds) closeQuietly(f);
        else this.onMessage(m);
      }
    }
  }

  private fail(message: string): void {
    this.counters.badMessages++;
    this.log.warn(`vhost-user: ${message}; closing the connection`);
    this.finish({ reason: 'error', message });
  }

  private send(out: Buffer): void {
    // once ended the fd is closed, and its number may already name a file another thread opened
    if (this.ended) return;
    let n: number;
    try {
      n = sys.sendMsg(this.fd, out, 0, out.length);
    } catch (e) {
      // the VMM closed its end with our reply due (it was killed, or hung up mid-handshake): a
      // disconnect, not an internal error
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPIPE' || code === 'ECONNRESET') this.finish({ reason: 'closed' });
      else this.fail(`cannot send a reply (${(e as Error).message})`);
      return;
    }
    if (n !== out.length) this.fail(`cannot send a reply (${n})`);
  }

  private onMessage(raw: RawMessage): void {
    if (this.opts.supervised && isPrivate(raw.request)) {
      this.onPrivate(raw);
      return;
    }
    const m = decodeMessage(raw);
    if ('error' in m) {
      for (const f of m.fds) closeQuietly(f);
      this.counters.badMessages++;
      this.once.warn(`bad-${raw.request}`, { request: raw.request, why: m.error }, 'vhost-user: refused a malformed message');
      // a request that expects a value back cannot be answered: the VMM would wait for ever
      if (expectsValue(raw.request)) this.fail(`malformed request ${raw.request}: ${m.error}`);
      else this.ack(raw.request, (raw.flags & 0x8) !== 0, false);
      return;
    }
    let ok: boolean | null;
    try {
      ok = this.apply(m);
    } catch (e) {
      for (const f of messageFds(m)) closeQuietly(f);
      throw e;
    }
    if (ok !== null) this.ack(m.request, m.needReply, ok);
  }

  private onPrivate(raw: RawMessage): void {
    switch (raw.request) {
      case Private.INIT:
        for (const f of raw.fds) closeQuietly(f);
        this.fail('INIT goes from a worker to its supervisor, never back');
        return;
      case Private.INFLIGHT: {
        const fd = raw.fds[0];
        for (const f of raw.fds.slice(1)) closeQuietly(f);
        if (fd === undefined || raw.payload.length !== 8) {
          closeQuietly(fd);
          this.fail('a malformed in-flight table message from the supervisor');
          return;
        }
        try {
          const ab = sys.mapShared(fd, INFLIGHT_BYTES, 0);
          this.inflight = new InflightTable(new Uint8Array(ab));
          this.inflightMapping = ab;
        } finally {
          closeQuietly(fd);
        }
        if ((raw.payload.readBigUInt64LE(0) & 1n) !== 0n) for (const q of this.queues) this.recover.add(q.index);
        return;
      }
      case Private.DRAIN:
        for (const f of raw.fds) closeQuietly(f);
        this.draining = raw;
        this.drained();
        return;
    }
  }

  /** Once draining and nothing taken is unanswered: tell the supervisor. */
  private drained(): void {
    if (!this.draining || this.taken > 0) return;
    this.draining = null;
    this.send(encodeU64Reply(Private.DRAIN, 0));
  }

  /** The REPLY_ACK answer to a message that asked for one: 0 for success. */
  private ack(request: number, needReply: boolean, ok: boolean): void {
    if (needReply && (this.protocolFeatures & P_REPLY_ACK) !== 0n) this.send(encodeAck(request, ok));
  }

  /**
   * Carry out one decoded message: the REPLY_ACK verdict, or null when a value reply was sent.
   * Every fd the message carried is taken over (kept or closed) here.
   */
  private apply(m: VhostMessage): boolean | null {
    switch (m.request) {
      case Req.GET_FEATURES:
        this.send(encodeU64Reply(m.request, OFFERED_FEATURES));
        return null;
      case Req.SET_FEATURES:
        if ((m.value & ~OFFERED_FEATURES) !== 0n) {
          this.once.warn('features', { features: m.value.toString(16) }, 'vhost-user: the VMM set features we did not offer');
          return false;
        }
        this.features = m.value;
        return true;
      case Req.GET_PROTOCOL_FEATURES:
        this.send(encodeU64Reply(m.request, this.offeredProtocolFeatures()));
        return null;
      case Req.SET_PROTOCOL_FEATURES:
        this.protocolFeatures = m.value & this.offeredProtocolFeatures();
        return true;
      case Req.GET_QUEUE_NUM:
        this.send(encodeU64Reply(m.request, this.queues.length));
        return null;
      case Req.GET_MAX_MEM_SLOTS:
        this.send(encodeU64Reply(m.request, MAX_MEM_SLOTS));
        return null;
      case Req.SET_OWNER:
        return true;
      case Req.RESET_OWNER:
        for (const q of this.queues) this.stopQueue(q);
        return true;
      case Req.SET_MEM_TABLE:
        return this.setMemTable(m.regions, m.fds);
      case Req.ADD_MEM_REG:
        return this.addRegion(m.region, m.fd);
      case Req.REM_MEM_REG:
        for (const f of m.fds) closeQuietly(f);
        return this.removeRegion(m.region);
      case Req.SET_VRING_NUM:
      case Req.SET_VRING_BASE:
      case Req.SET_VRING_ENABLE:
      case Req.GET_VRING_BASE: {
        const q = this.queueOf(m.index);
        if (m.request === Req.GET_VRING_BASE) {
          // the queue stops; its next avail index goes back to the VMM
          const next = q?.ring ? q.ring.lastAvailIdx : q?.base ?? 0;
          if (q) {
            this.stopQueue(q);
            q.base = next;
          }
          this.send(encodeStateReply(m.request, m.index, next));
          return null;
        }
        if (!q) return false;
        if (m.request === Req.SET_VRING_ENABLE) {
          q.enabled = m.num !== 0;
          this.maybeStart(q);
          return true;
        }
        if (q.ring) return false; // a running queue's size and base are fixed
        if (m.request === Req.SET_VRING_NUM) q.num = m.num;
        else q.base = m.num;
        return true;
      }
      case Req.SET_VRING_ADDR: {
        const q = this.queueOf(m.index);
        if (!q || q.ring) return false;
        q.addr = { desc: m.desc, avail: m.avail, used: m.used };
        return true;
      }
      case Req.SET_VRING_KICK:
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR: {
        const q = this.queueOf(m.index);
        if (!q) {
          closeQuietly(m.fd);
          return false;
        }
        const fd = m.fd ?? -1;
        if (m.request === Req.SET_VRING_KICK) {
          this.unwatchKick(q);
          closeQuietly(q.kickFd);
          q.kickFd = fd;
          if (q.ring) this.watchKick(q);
          else this.maybeStart(q);
        } else if (m.request === Req.SET_VRING_CALL) {
          closeQuietly(q.callFd);
          q.callFd = nonBlocking(fd);
        } else {
          closeQuietly(q.errFd);
          q.errFd = nonBlocking(fd);
        }
        return true;
      }
      case Req.GET_CONFIG: {
        const space = this.configSpace();
        if (space === null) return this.unsupported(m);
        // the part of the config space asked for; past its end an empty answer
        const ok = m.offset + m.size <= space.length && m.size > 0;
        const out = Buffer.alloc(12 + (ok ? m.size : 0));
        out.writeUInt32LE(m.offset, 0);
        out.writeUInt32LE(ok ? m.size : 0, 4);
        out.writeUInt32LE(m.flags, 8);
        if (ok) space.copy(out, 12, m.offset, m.offset + m.size);
        this.send(encodeReply(m.request, out));
        return null;
      }
      case Req.SET_CONFIG:
        // the config space is read-only
        for (const f of messageFds(m)) closeQuietly(f);
        return false;
      case Req.GET_STATUS:
        // not offered (no STATUS protocol feature): a VMM asking anyway gets 0
        this.send(encodeU64Reply(m.request, 0));
        return null;
      case Req.SET_STATUS:
        return true;
      default:
        return this.unsupported(m);
    }
  }

  /** A request of a feature we did not offer (logging, back-end channel, config space, inflight tracking). */
  private unsupported(m: VhostMessage): false {
    for (const f of messageFds(m)) closeQuietly(f);
    this.once.warn(`unsupported-${m.request}`, { request: m.request }, 'vhost-user: refused a request of a feature we did not offer');
    if (expectsValue(m.request)) this.fail(`request ${m.request} is not supported`);
    return false;
  }

  private offeredProtocolFeatures(): bigint {
    return this.opts.tag === undefined ? OFFERED_PROTOCOL_FEATURES : OFFERED_PROTOCOL_FEATURES | P_CONFIG;
  }

  private configSpace(): Buffer | null {
    if (this.opts.tag === undefined) return null;
    const b = Buffer.alloc(TAG_BYTES + 4);
    Buffer.from(this.opts.tag).copy(b, 0, 0, TAG_BYTES);
    b.writeUInt32LE(this.opts.requestQueues, TAG_BYTES);
    return b;
  }

  private queueOf(index: number): QueueState | null {
    const q = this.queues[index];
    if (!q) this.once.warn(`queue-${index}`, { index }, 'vhost-user: a message names a queue we do not have');
    return q ?? null;
  }

  /**
   * A queue starts once it has its size, addresses and kick fd (and, with PROTOCOL_FEATURES, when
   * enabled): the ring addresses are checked against guest memory then.
   */
  private maybeStart(q: QueueState): void {
    const enabled = q.enabled || (this.features & F_PROTOCOL_FEATURES) === 0n;
    if (!enabled) {
      if (q.ring) this.stopQueue(q);
      return;
    }
    if (q.ring) {
      this.scheduleServe(q);
      return;
    }
    if (q.broken || !q.addr || q.kickFd < 0 || q.num === 0) return;
    if (!this.startRing(q)) return;
    if (!this.watchKick(q)) return;
    // requests posted before the kick fd arrived are not lost
    this.scheduleServe(q);
  }

  private buildRing(q: QueueState, lastAvail: number): boolean {
    const a = q.addr!;
    const desc = this.memory.uvaToGpa(a.desc, 16 * q.num);
    const avail = this.memory.uvaToGpa(a.avail, 6 + 2 * q.num);
    const used = this.memory.uvaToGpa(a.used, 6 + 8 * q.num);
    if (desc === null || avail === null || used === null) {
      this.breakQueue(q, 'its ring addresses are outside guest memory');
      return false;
    }
    const ring = SplitQueue.create(this.memory, {
      num: q.num, desc, avail, used, lastAvail,
      eventIdx: (this.features & F_EVENT_IDX) !== 0n,
      indirect: (this.features & F_INDIRECT) !== 0n,
      maxChainBytes: this.opts.maxRequestBytes,
    });
    if (!(ring instanceof SplitQueue)) {
      this.breakQueue(q, ring.error);
      return false;
    }
    q.ring = ring;
    return true;
  }

  /**
   * A queue starts: fresh, or (after a predecessor died) where it left off. Chains it took and never
   * answered get an error reply: a guest process waiting on one sees EIO instead of hanging.
   */
  private startRing(q: QueueState): boolean {
    if (!this.buildRing(q, q.base)) return false;
    const rec = this.recover.delete(q.index) ? this.inflight.recover(q.index, q.num, q.ring!.lastUsedIdx) : null;
    if (!rec) {
      this.inflight.reset(q.index, q.base);
      return true;
    }
    if (rec.lastAvail !== q.base && !this.buildRing(q, rec.lastAvail)) return false;
    const ring = q.ring!;
    for (const head of rec.heads) {
      const c = ring.chainAt(head);
      let rep: Buffer | null = null;
      if (!('broken' in c)) {
        const req = readAll(c.readable);
        if (req && req.length >= InHeader.SIZE && !opcodeRow(req.readUInt32LE(InHeader.opcode))?.noReply) {
          rep = encodeError(req.readBigUInt64LE(InHeader.unique), E.EIO);
        }
      }
      this.counters.recoveredRequests++;
      this.taken++;
      this.complete(q, q.epoch, 'broken' in c ? { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 } : c, rep);
    }
    if (rec.heads.length > 0) {
      this.log.warn({ queue: q.index, requests: rec.heads.length }, 'vhost-user: answered EIO to the requests a crashed worker had taken');
    }
    return true;
  }

  /**
   * Serve the queue on each kick; false (the queue broken) when the kick fd cannot be polled (a
   * regular file, say). uv_poll makes the fd non-blocking. One read resets an eventfd's counter; a
   * loop until EAGAIN would spin for ever on a semaphore-mode eventfd the VMM filled (the poll is
   * level-triggered: a count left over fires it again next turn).
   */
  private watchKick(q: QueueState): boolean {
    if (q.poll || q.kickFd < 0) return true;
    const fd = q.kickFd;
    try {
      q.poll = sys.pollStart(fd, () => this.guard(`queue ${q.index}`, () => {
        // reset the counter first: a kick arriving while we serve re-arms the poll
        try {
          sys.eventfdRead(fd);
        } catch (e) {
          this.breakQueue(q, `its kick fd cannot be read (${(e as Error).message})`);
          return;
        }
        this.serveQueue(q);
      }));
    } catch (e) {
      this.breakQueue(q, `its kick fd cannot be polled (${(e as Error).message})`);
      return false;
    }
    return true;
  }

  private unwatchKick(q: QueueState): void {
    if (q.poll) sys.pollStop(q.poll);
    q.poll = null;
  }

  private stopQueue(q: QueueState): void {
    this.unwatchKick(q);
    if (q.ring) {
      // where the queue stopped is what GET_VRING_BASE answers (QEMU sends SET_VRING_ENABLE 0
      // first) and where it resumes: the base it was started with would replay served chains
      q.base = q.ring.lastAvailIdx;
      q.epoch++;
    }
    q.ring = null;
  }

  private breakQueue(q: QueueState, why: string): void {
    if (q.broken) return;
    q.broken = why;
    this.counters.brokenQueues++;
    this.log.warn({ queue: q.index, why }, 'vhost-user: the guest broke a queue; it is no longer served');
    this.stopQueue(q);
    if (q.errFd >= 0) {
      try {
        sys.eventfdWrite(q.errFd, 1);
      } catch {
        /* the VMM's error fd refuses the write: the warning above is all it gets */
      }
    }
  }

  private scheduleServe(q: QueueState): void {
    if (q.servePending) return;
    q.servePending = true;
    setImmediate(() => {
      q.servePending = false;
      this.guard(`queue ${q.index}`, () => this.serveQueue(q));
    });
  }

  /** Take the available chains; with EVENT_IDX, publish how far we got and look once more. */
  private serveQueue(q: QueueState): void {
    const ring = q.ring;
    if (!ring || this.draining) return;
    for (let n = 0; n < BATCH; n++) {
      let c = ring.pop();
      if (c === null) {
        // ask for a kick at the next index, then look again: a chain posted in between is taken now
        ring.updateAvailEvent();
        c = ring.pop();
        if (c === null) return;
      }
      if ('broken' in c) {
        this.breakQueue(q, c.broken);
        return;
      }
      // recorded before the request runs: a successor must know it was taken
      this.inflight.taken(q.index, c.head, ring.lastAvailIdx);
      this.taken++;
      this.dispatch(q, c);
    }
    // more than a batch: go on after other events had their turn
    this.scheduleServe(q);
  }

  private dispatch(q: QueueState, c: Chain): void {
    this.counters.requests++;
    const epoch = q.epoch;
    const { req, io } = this.split(c);
    if (req === null) {
      // its memory was unmapped under it: nothing to serve, the buffers go back empty
      this.complete(q, epoch, c, null);
      return;
    }
    if (this.opts.supervised && req.length >= InHeader.SIZE && req.readUInt32LE(InHeader.opcode) === Op.INIT) {
      // the supervisor keeps it for a successor (INIT comes once per guest driver)
      const init = Buffer.concat([Buffer.alloc(12), req]);
      init.writeUInt32LE(Private.INIT, 0);
      init.writeUInt32LE(1, 4);
      init.writeUInt32LE(req.length, 8);
      this.send(init);
    }
    this.server.handle(req, io).then(
      (rep) => this.guard(`queue ${q.index}`, () => this.complete(q, epoch, c, rep, io?.readInto ? c.writableBytes : 0)),
      () => this.guard(`queue ${q.index}`, () => this.complete(q, epoch, c, null)),
    );
  }

  /**
   * The request bytes to hand over, and the guest memory READ and WRITE data moves through
   * directly: a WRITE's payload stays in the guest's pages (only its headers are copied), a READ
   * gets the reply space after the out header. Other requests are copied whole.
   */
  private split(c: Chain): { req: Buffer | null; io?: TransportIo } {
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

  /** `readRoom`: a READ served into guest memory (`split`): the reply header counts data already in place, up to this room. */
  private complete(q: QueueState, epoch: number, c: Chain, rep: Buffer | null, readRoom = 0): void {
    this.taken--;
    const ring = q.ring;
    // the queue was stopped or reset meanwhile: the chain is not ours any more
    if (!ring || q.epoch !== epoch) {
      if (rep) this.server.recycle?.(rep);
      this.drained();
      return;
    }
    let written = 0;
    if (rep) {
      this.opts.beforeReply?.();
      const w = new ChainWriter(c.writable);
      written = w.write(rep);
      this.server.recycle?.(rep);
      const claimed = rep.length === OutHeader.SIZE ? rep.readUInt32LE(OutHeader.len) : 0;
      if (readRoom > 0 && written === OutHeader.SIZE && claimed > OutHeader.SIZE && claimed <= readRoom) written = claimed;
      else if (written < rep.length) {
        this.once.warn(`short-${q.index}`, { queue: q.index, reply: rep.length, room: c.writableBytes }, "vhost-user: a reply did not fit the guest's buffers; truncated");
      }
    }
    this.inflight.answering(q.index, c.head, ring.lastUsedIdx);
    const broken = ring.pushUsed(c.head, written);
    this.inflight.answered(q.index, c.head);
    this.drained();
    if (broken) {
      this.breakQueue(q, broken.broken);
      return;
    }
    this.counters.replies++;
    if (!q.signalPending) {
      q.signalPending = true;
      // one interrupt for the replies completed in the same turn
      queueMicrotask(() => this.guard(`queue ${q.index}`, () => this.signal(q)));
    }
  }

  private signal(q: QueueState): void {
    q.signalPending = false;
    const ring = q.ring;
    if (!ring || q.callFd < 0) return;
    if (ring.shouldNotify()) {
      try {
        sys.eventfdWrite(q.callFd, 1);
      } catch (e) {
        this.fail(`the call fd of queue ${q.index} refuses writes (${(e as Error).message})`);
        return;
      }
      this.counters.signals++;
    }
  }

  /**
   * Map a region from the page holding its start (mmap's offset must be page-aligned). One mapping
   * holds at most 4 GiB (an ArrayBuffer's limit in Node 20): a larger region is refused. mmap
   * accepts a range past the end of a file, but touching those pages raises SIGBUS and kills the
   * process: a region a regular file (memfd, shm, hugetlbfs) does not cover is refused here.
   */
  private map(r: RegionDesc, fd: number): MemoryRegion[] {
    if (r.size === 0n) throw new Error('a memory region of size 0');
    const st = statAt(fd, EMPTY_NAME, AT_EMPTY_PATH);
    if ((st.mode & S_IFMT) === S_IFREG && st.size < r.mmapOffset + r.size) {
      throw new Error(`region [${r.mmapOffset}, +${r.size}) ends past the end of its file (${st.size} bytes)`);
    }
    const out: MemoryRegion[] = [];
    try {
      for (const p of regionPieces(r, this.opts.mapPieceBytes)) {
        const lead = p.mmapOffset & PAGE_MASK;
        const ab = sys.mapShared(fd, p.size + lead, p.mmapOffset - lead);
        out.push({ ...p, bytes: new Uint8Array(ab, Number(lead), Number(p.size)) });
      }
    } catch (e) {
      for (const m of out) unmap(m);
      throw e;
    }
    return out;
  }

  /** Rings live in guest memory: after a change of the table each running queue is rebuilt where it was. */
  private rebuildRings(): void {
    for (const q of this.queues) {
      if (!q.ring) continue;
      const at = q.ring.lastAvailIdx;
      q.ring = null;
      if (!this.buildRing(q, at)) this.unwatchKick(q);
    }
  }

  private setMemTable(regions: readonly RegionDesc[], fds: readonly number[]): boolean {
    const mapped: MemoryRegion[] = [];
    try {
      for (let i = 0; i < regions.length; i++) mapped.push(...this.map(regions[i]!, fds[i]!));
    } catch (e) {
      for (const r of mapped) unmap(r);
      this.once.warn('mem-table', { err: e }, 'vhost-user: cannot map the guest memory table');
      return false;
    } finally {
      for (const f of fds) closeQuietly(f);
    }
    const res = this.memory.replaceAll(mapped);
    if ('error' in res) {
      for (const r of mapped) unmap(r);
      this.once.warn('mem-table-bad', { why: res.error }, 'vhost-user: refused a guest memory table');
      return false;
    }
    this.rebuildRings();
    for (const r of res.removed) unmap(r);
    return true;
  }

  private addRegion(d: RegionDesc, fd: number): boolean {
    let pieces: MemoryRegion[];
    try {
      pieces = this.map(d, fd);
    } catch (e) {
      this.once.warn('add-mem-reg', { err: e }, 'vhost-user: cannot map a guest memory region');
      return false;
    } finally {
      closeQuietly(fd);
    }
    const res = this.memory.replaceAll([...this.memory.regions, ...pieces]);
    if ('error' in res) {
      for (const p of pieces) unmap(p);
      this.once.warn('add-mem-reg-bad', { why: res.error }, 'vhost-user: refused a guest memory region');
      return false;
    }
    return true;
  }

  private removeRegion(d: RegionDesc): boolean {
    // exactly the pieces the region was added as, or nothing
    const pieces = regionPieces(d, this.opts.mapPieceBytes);
    const gone = this.memory.regions.filter((r) => pieces.some((p) => p.gpa === r.gpa && p.size === r.size && p.uva === r.uva));
    if (pieces.length === 0 || gone.length !== pieces.length) {
      this.once.warn('rem-mem-reg', { gpa: d.gpa.toString(16) }, 'vhost-user: cannot remove a guest memory region: no such region');
      return false;
    }
    const res = this.memory.replaceAll(this.memory.regions.filter((r) => !gone.includes(r)));
    if ('error' in res) return false;
    this.rebuildRings();
    for (const r of gone) unmap(r);
    return true;
  }

  /** Release everything: polls, eventfds, mappings (unmapped once no I/O uses them), the socket. */
  private finish(end: ConnectionEnd): void {
    if (this.ended) return;
    this.ended = true;
    if (this.socketPoll) sys.pollStop(this.socketPoll);
    this.socketPoll = null;
    for (const q of this.queues) {
      this.stopQueue(q);
      for (const f of [q.kickFd, q.callFd, q.errFd]) closeQuietly(f);
      q.kickFd = q.callFd = q.errFd = -1;
    }
    for (const f of this.reader.close()) closeQuietly(f);
    for (const r of this.memory.clear()) unmap(r);
    if (this.inflightMapping) sys.unmapShared(this.inflightMapping);
    this.inflightMapping = null;
    closeQuietly(this.fd);
    this.endWith(end);
  }
}

/**
 * The VMM's call and err fds are written from the event loop: a blocking eventfd at its maximum
 * count (or a full pipe) would stall the whole server, so they are made non-blocking (a full one
 * then drops the signal: the reader has one pending). QEMU's eventfds already are.
 */
function nonBlocking(fd: number): number {
  if (fd < 0) return fd;
  try {
    sys.fcntlInt(fd, F_SETFL, sys.fcntlInt(fd, F_GETFL, 0) | O_NONBLOCK);
  } catch {
    /* not an fd fcntl knows: writing to it fails later, and ends the connection */
  }
  return fd;
}

/** Requests whose sender waits for a value (not only an ack): one we cannot answer ends the connection. */
function expectsValue(request: number): boolean {
  return request === Req.GET_FEATURES || request === Req.GET_PROTOCOL_FEATURES || request === Req.GET_QUEUE_NUM
    || request === Req.GET_VRING_BASE || request === Req.GET_MAX_MEM_SLOTS || request === Req.GET_CONFIG
    || request === Req.GET_INFLIGHT_FD || request === Req.GET_STATUS;
}
