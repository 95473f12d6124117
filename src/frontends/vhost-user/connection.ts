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
 * Threads: everything here runs on the event loop. The socket and the kick eventfds are
 * non-blocking and watched with uv_poll; no thread sits in a read. A request queue may be served
 * on a serving thread of its own (ConnectionOptions.remote, queue-threads.ts): the messages that
 * start, stop and remap it still come here, and reach that thread before they are acknowledged.
 */
import type { Logger } from 'pino';
import { E } from '../../errors.js';
import { InHeader } from '../../fuse/abi.js';
import type { TransportIo } from '../../fuse/codec.js';
import { encodeError } from '../../fuse/codec.js';
import { Op, opcodeRow } from '../../fuse/opcodes.js';
import { LogOnce } from '../../log.js';
import { F_GETFL, F_SETFL, O_NONBLOCK } from '../../sys/constants.js';
import { sys } from '../../sys/syscalls.js';
import { GuestMemory, type MemoryRegion } from './guest-memory.js';
import { closeQuietly, dupFor, mapRegion, regionPieces, unmap } from './mapping.js';
import {
  Feature, MessageReader, ProtocolFeature, Req, decodeMessage, encodeAck, encodeReply, encodeStateReply, encodeU64Reply, featureMask,
  messageFds, type RawMessage, type RegionDesc, type VhostMessage,
} from './messages.js';
import { INFLIGHT_BYTES, InflightTable } from './inflight.js';
import { QueueRunner, type QueueHost } from './queue-runner.js';
import { SplitQueue, readAll } from './vring.js';

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
  /** request queues served on other threads (queue-threads.ts); never with `supervised` */
  remote?: RemoteQueues;
}

/** A queue's ring as a serving thread builds it: guest-physical addresses, checked against guest memory here. */
export interface RemoteQueueSpec {
  num: number;
  desc: bigint;
  avail: bigint;
  used: bigint;
  lastAvail: number;
  eventIdx: boolean;
  indirect: boolean;
  maxChainBytes: number;
  /** dups of the queue's eventfds, which the thread takes over (and closes); -1 for none */
  kickFd: number;
  callFd: number;
}

/** A piece of guest memory (regionPieces) and a dup of its fd, which the thread takes over: maps, then closes. */
export interface RemoteRegion extends RegionDesc {
  fd: number;
}

/**
 * Request queues served on other threads. Each call that starts, stops or remaps a queue returns
 * once the thread did it (the VMM may reuse the memory once the message is acknowledged).
 */
export interface RemoteQueues {
  /** whether vring `index` is served on another thread */
  serves(index: number): boolean;
  /**
   * Start it there; false when the thread could not (its reason is logged there). `onBroken`: the
   * thread stopped it on its own (the guest broke the ring), until stop() is called.
   */
  start(index: number, spec: RemoteQueueSpec, regions: RemoteRegion[], onBroken: (why: string) => void): boolean;
  /** stop it there: where it stopped (its next avail index), or null when the thread did not answer */
  stop(index: number): number | null;
  /** a new kick or call eventfd for a running queue (a dup the thread takes over) */
  setKick(index: number, fd: number): void;
  setCall(index: number, fd: number): void;
  /** the memory table changed: each running queue remaps and rebuilds its ring where it was; false when one could not */
  remap(regions: RemoteRegion[]): boolean;
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
/** GET_MAX_MEM_SLOTS: the regions a VMM may add (QEMU's most) */
const MAX_MEM_SLOTS = 32;

interface QueueState {
  index: number;
  num: number;
  base: number;
  addr: { desc: bigint; avail: bigint; used: bigint } | null;
  kickFd: number;
  callFd: number;
  errFd: number;
  enabled: boolean;
  /** running here */
  runner: QueueRunner | null;
  /** running on another thread (ConnectionOptions.remote) */
  remote: boolean;
  broken: string | null;
}

const running = (q: QueueState): boolean => q.runner !== null || q.remote;


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
  /** with remote queues: a dup of the fd each mapped piece of guest memory came from (closed when it is unmapped) */
  private readonly regionFds = new Map<MemoryRegion, number>();
  /** what the queues running here need of the connection */
  private readonly host: QueueHost;
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
      index, num: 0, base: 0, addr: null, kickFd: -1, callFd: -1, errFd: -1, enabled: false, runner: null, remote: false, broken: null,
    }));
    this.done = new Promise((r) => (this.endWith = r));
    server.reuseReplies?.();
    this.host = {
      handle: (req, io) => server.handle(req, io),
      ...(server.recycle ? { recycle: (reply: Buffer) => server.recycle!(reply) } : {}),
      holding: () => this.draining !== null,
      taken: (q, head, lastAvail) => {
        this.inflight.taken(q, head, lastAvail);
        this.taken++;
      },
      answering: (q, head, lastUsed) => this.inflight.answering(q, head, lastUsed),
      answered: (q, head) => this.inflight.answered(q, head),
      settled: () => {
        this.taken--;
        this.drained();
      },
      ...(opts.supervised ? { request: (req: Buffer) => this.forwardInit(req) } : {}),
      ...(opts.beforeReply ? { beforeReply: opts.beforeReply } : {}),
      broken: (q, why) => this.breakQueue(this.queues[q]!, why),
      fail: (why) => this.fail(why),
      guard: (what, fn) => this.guard(what, fn),
      counters: this.counters,
      once: this.once,
    };
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
          if (q) this.stopQueue(q);
          this.send(encodeStateReply(m.request, m.index, q?.base ?? 0));
          return null;
        }
        if (!q) return false;
        if (m.request === Req.SET_VRING_ENABLE) {
          q.enabled = m.num !== 0;
          this.maybeStart(q);
          return true;
        }
        if (running(q)) return false; // a running queue's size and base are fixed
        if (m.request === Req.SET_VRING_NUM) q.num = m.num;
        else q.base = m.num;
        return true;
      }
      case Req.SET_VRING_ADDR: {
        const q = this.queueOf(m.index);
        if (!q || running(q)) return false;
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
          closeQuietly(q.kickFd);
          q.kickFd = fd;
          if (q.remote) this.opts.remote!.setKick(q.index, dupFor(fd));
          else if (q.runner) {
            if (!q.runner.setKick(fd)) return true;
          } else this.maybeStart(q);
        } else if (m.request === Req.SET_VRING_CALL) {
          closeQuietly(q.callFd);
          q.callFd = nonBlocking(fd);
          if (q.remote) this.opts.remote!.setCall(q.index, dupFor(q.callFd));
          else if (q.runner) q.runner.callFd = q.callFd;
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
      if (running(q)) this.stopQueue(q);
      return;
    }
    if (q.runner) {
      q.runner.wake();
      return;
    }
    if (q.remote || q.broken || !q.addr || q.kickFd < 0 || q.num === 0) return;
    if (this.opts.remote?.serves(q.index)) {
      this.startRemote(q);
      return;
    }
    const ring = this.buildRing(q, q.base);
    if (ring === null) return;
    q.runner = new QueueRunner(q.index, ring, q.kickFd, q.callFd, this.host);
    // a queue a predecessor ran may resume on a ring rebuilt where it stopped (a new runner)
    this.recoverTaken(q, q.runner);
    q.runner?.start();
  }

  /** The queue's ring addresses as guest-physical ones, or null (the queue broken) when they are outside guest memory. */
  private ringPlace(q: QueueState): { desc: bigint; avail: bigint; used: bigint } | null {
    const a = q.addr!;
    const desc = this.memory.uvaToGpa(a.desc, 16 * q.num);
    const avail = this.memory.uvaToGpa(a.avail, 6 + 2 * q.num);
    const used = this.memory.uvaToGpa(a.used, 6 + 8 * q.num);
    if (desc === null || avail === null || used === null) {
      this.breakQueue(q, 'its ring addresses are outside guest memory');
      return null;
    }
    return { desc, avail, used };
  }

  private ringConfig(): { eventIdx: boolean; indirect: boolean; maxChainBytes: number } {
    return { eventIdx: (this.features & F_EVENT_IDX) !== 0n, indirect: (this.features & F_INDIRECT) !== 0n, maxChainBytes: this.opts.maxRequestBytes };
  }

  private buildRing(q: QueueState, lastAvail: number): SplitQueue | null {
    const place = this.ringPlace(q);
    if (place === null) return null;
    const ring = SplitQueue.create(this.memory, { num: q.num, ...place, lastAvail, ...this.ringConfig() });
    if (!(ring instanceof SplitQueue)) {
      this.breakQueue(q, ring.error);
      return null;
    }
    return ring;
  }

  /** The queue starts on the thread that serves it; the ring is checked here first, and there again. */
  private startRemote(q: QueueState): void {
    const place = this.ringPlace(q);
    if (place === null) return;
    const spec: RemoteQueueSpec = { num: q.num, ...place, lastAvail: q.base, ...this.ringConfig(), kickFd: dupFor(q.kickFd), callFd: dupFor(q.callFd) };
    const broken = (why: string): void => this.guard(`queue ${q.index}`, () => this.breakQueue(q, why));
    if (!this.opts.remote!.start(q.index, spec, this.remoteRegions(), broken)) {
      this.breakQueue(q, 'its serving thread could not start it');
      return;
    }
    q.remote = true;
  }

  /** The mapped pieces of guest memory, each with a dup of its fd for a serving thread. */
  private remoteRegions(): RemoteRegion[] {
    return this.memory.regions.map((r) => ({ gpa: r.gpa, size: r.size, uva: r.uva, mmapOffset: r.mmapOffset, fd: dupFor(this.regionFds.get(r) ?? -1) }));
  }

  /**
   * After a predecessor died: chains it took and never answered get an error reply, so that a
   * guest process waiting on one sees EIO instead of hanging. The queue resumes where the
   * predecessor took its last chain.
   */
  private recoverTaken(q: QueueState, first: QueueRunner): void {
    const rec = this.recover.delete(q.index) ? this.inflight.recover(q.index, q.num, first.lastUsedIdx) : null;
    if (!rec) {
      this.inflight.reset(q.index, q.base);
      return;
    }
    let runner = first;
    if (rec.lastAvail !== q.base) {
      first.stop();
      q.runner = null;
      const ring = this.buildRing(q, rec.lastAvail);
      if (ring === null) return;
      runner = new QueueRunner(q.index, ring, q.kickFd, q.callFd, this.host);
      q.runner = runner;
    }
    for (const head of rec.heads) {
      const c = runner.chainAt(head);
      let rep: Buffer | null = null;
      if (!('broken' in c)) {
        const req = readAll(c.readable);
        if (req && req.length >= InHeader.SIZE && !opcodeRow(req.readUInt32LE(InHeader.opcode))?.noReply) {
          rep = encodeError(req.readBigUInt64LE(InHeader.unique), E.EIO);
        }
      }
      this.counters.recoveredRequests++;
      this.taken++;
      runner.complete('broken' in c ? { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 } : c, rep);
    }
    if (rec.heads.length > 0) {
      this.log.warn({ queue: q.index, requests: rec.heads.length }, 'vhost-user: answered EIO to the requests a crashed worker had taken');
    }
  }

  /**
   * The queue stops: where it stopped is what GET_VRING_BASE answers (QEMU sends SET_VRING_ENABLE 0
   * first) and where it resumes: the base it was started with would replay served chains.
   */
  private stopQueue(q: QueueState): void {
    if (q.runner) q.base = q.runner.stop();
    q.runner = null;
    if (q.remote) {
      q.remote = false;
      const at = this.opts.remote!.stop(q.index);
      if (at !== null) q.base = at;
      // the thread is gone or hung (QueueThreads logged it): not the VMM's fault, so not a bad
      // message; the connection cannot answer for that queue any more, so it ends
      else if (!this.ended) this.finish({ reason: 'error', message: `the serving thread of queue ${q.index} did not stop it` });
    }
  }

  private breakQueue(q: QueueState, why: string): void {
    if (q.broken) return;
    q.broken = why;
    this.counters.brokenQueues++;
    this.log.warn({ queue: q.index, why }, 'vhost-user: the guest broke a queue; it is no longer served');
    this.stopQueue(q);
    this.signalError(q);
  }

  /** Tell the VMM a queue broke (its error eventfd). */
  private signalError(q: QueueState): void {
    if (q.errFd >= 0) {
      try {
        sys.eventfdWrite(q.errFd, 1);
      } catch {
        /* the VMM's error fd refuses the write: the warning above is all it gets */
      }
    }
  }

  /** The supervisor keeps the guest's INIT for a successor (INIT comes once per guest driver). */
  private forwardInit(req: Buffer): void {
    if (req.length < InHeader.SIZE || req.readUInt32LE(InHeader.opcode) !== Op.INIT) return;
    const init = Buffer.concat([Buffer.alloc(12), req]);
    init.writeUInt32LE(Private.INIT, 0);
    init.writeUInt32LE(1, 4);
    init.writeUInt32LE(req.length, 8);
    this.send(init);
  }

  /** Map a region (mapping.ts); with remote queues, a dup of its fd is kept for their threads. */
  private map(r: RegionDesc, fd: number): MemoryRegion[] {
    const out = mapRegion(r, fd, this.opts.mapPieceBytes);
    if (this.opts.remote) {
      try {
        for (const p of out) this.regionFds.set(p, dupFor(fd));
      } catch (e) {
        this.release(out);
        throw e;
      }
    }
    return out;
  }

  /** Unmap regions no longer in the table (and close the fds kept for them). */
  private release(regions: readonly MemoryRegion[]): void {
    for (const r of regions) {
      unmap(r);
      closeQuietly(this.regionFds.get(r));
      this.regionFds.delete(r);
    }
  }

  /**
   * Rings live in guest memory: after a change of the table each running queue is rebuilt where
   * it was, here and on the serving threads (which are done with the old table when this returns).
   */
  private rebuildRings(): void {
    for (const q of this.queues) {
      if (!q.runner) continue;
      const ring = this.buildRing(q, q.runner.lastAvailIdx);
      if (ring !== null) q.runner.replaceRing(ring);
    }
    if (this.opts.remote && this.queues.some((q) => q.remote) && !this.opts.remote.remap(this.remoteRegions())) {
      for (const q of this.queues) if (q.remote) this.breakQueue(q, 'its serving thread could not map the new memory table');
    }
  }

  private setMemTable(regions: readonly RegionDesc[], fds: readonly number[]): boolean {
    const mapped: MemoryRegion[] = [];
    try {
      for (let i = 0; i < regions.length; i++) mapped.push(...this.map(regions[i]!, fds[i]!));
    } catch (e) {
      this.release(mapped);
      this.once.warn('mem-table', { err: e }, 'vhost-user: cannot map the guest memory table');
      return false;
    } finally {
      for (const f of fds) closeQuietly(f);
    }
    const res = this.memory.replaceAll(mapped);
    if ('error' in res) {
      this.release(mapped);
      this.once.warn('mem-table-bad', { why: res.error }, 'vhost-user: refused a guest memory table');
      return false;
    }
    this.rebuildRings();
    this.release(res.removed);
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
      this.release(pieces);
      this.once.warn('add-mem-reg-bad', { why: res.error }, 'vhost-user: refused a guest memory region');
      return false;
    }
    // a running queue's thread maps what the guest added (its rings may move into it)
    if (this.opts.remote && this.queues.some((q) => q.remote) && !this.opts.remote.remap(this.remoteRegions())) {
      for (const q of this.queues) if (q.remote) this.breakQueue(q, 'its serving thread could not map the new memory region');
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
    this.release(gone);
    return true;
  }

  /** Release everything: polls, eventfds, mappings (unmapped once no I/O uses them), the socket. */
  private finish(end: ConnectionEnd): void {
    if (this.ended) return;
    this.ended = true;
    if (this.socketPoll) sys.pollStop(this.socketPoll);
    this.socketPoll = null;
    for (const q of this.queues) {
      // a serving thread stops its queue and unmaps its memory before the fds below are closed
      this.stopQueue(q);
      for (const f of [q.kickFd, q.callFd, q.errFd]) closeQuietly(f);
      q.kickFd = q.callFd = q.errFd = -1;
    }
    for (const f of this.reader.close()) closeQuietly(f);
    this.release(this.memory.clear());
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
