/**
 * A fake VMM for the live vhost-user back-end tests: what QEMU 7.2 does, in the test process. One
 * end of a socketpair speaks vhost-user messages (header, payload, SCM_RIGHTS fds) to a real
 * VhostUserConnection on the other end, or a socket connected to a real server's path
 * (FakeVmm.connect) does; guest RAM is a memfd the back-end maps from the fd it is sent, and the
 * test maps too (sys.mapShared), so the guest drivers (FakeDriver of vhost-fake-driver.ts, one per
 * request queue) write rings and requests the back-end reads. Kick and call are eventfds.
 *
 * The queues are the hiprio queue (vring 0, its rings in the low region, nothing ever posted there)
 * and R request queues (vrings 1..R): the high region from 0xc000 on is cut into R equal
 * page-aligned areas, one per request queue, each holding that queue's rings and then its heap.
 *
 * Each region sits in its own page-aligned chunk of the memfd with GUARD bytes before and after it
 * (so its mmap_offset is the chunk's offset + GUARD): the bytes the back-end must never write. The
 * test's mapping of a chunk is the FakeRegion's `buf`, laid out as FakeGuest expects.
 */
import { EFD_CLOEXEC, EFD_NONBLOCK, PAGE_SIZE } from '../../src/sys/constants.js';
import { sys } from '../../src/sys/syscalls.js';
import {
  Feature, FLAG_NEED_REPLY, FLAG_REPLY, HEADER_SIZE, ProtocolFeature, Req, VRING_NOFD_MASK, featureMask,
} from '../../src/frontends/vhost-user/messages.js';
import { DEFAULT_LAYOUT, FakeDriver, FakeGuest, GUARD, GUARD_BYTE, type Buf, type FakeRegion, type QueueOpts } from './vhost-fake-driver.js';

export const u32 = (...v: number[]): Buffer => Buffer.concat(v.map((x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x >>> 0); return b; }));
export const u64 = (...v: bigint[]): Buffer => Buffer.concat(v.map((x) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt.asUintN(64, x)); return b; }));
/** A vhost-user message as QEMU writes it: header (version 1 | flags) and payload. */
export const wire = (request: number, payload: Buffer = Buffer.alloc(0), flags = 0): Buffer =>
  Buffer.concat([u32(request, 0x1 | flags, payload.length), payload]);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const roundUp = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;

/** A region as the VMM describes it (VhostUserMemoryRegion) plus the memfd chunk behind it. */
export interface VmmRegion {
  gpa: bigint;
  size: bigint;
  uva: bigint;
  mmapOffset: bigint;
}
export const regionBytes = (r: VmmRegion): Buffer => u64(r.gpa, r.size, r.uva, r.mmapOffset);

/** The FakeGuest whose regions are chunks of a memfd mapped in this process (shared with the back-end). */
export class SharedGuest extends FakeGuest {
  readonly memfd: number;
  readonly descs: VmmRegion[] = [];

  constructor(layout: readonly { gpa: number; size: number }[] = DEFAULT_LAYOUT) {
    super(layout);
    const chunks = layout.map(({ size }) => roundUp(GUARD + size + GUARD));
    this.memfd = sys.memfdCreate('fake-vmm-ram', chunks.reduce((a, b) => a + b, 0));
    let at = 0;
    const shared: FakeRegion[] = layout.map(({ gpa, size }, i) => {
      const buf = sys.mapShared(this.memfd, chunks[i]!, at);
      new Uint8Array(buf).fill(GUARD_BYTE);
      const bytes = new Uint8Array(buf, GUARD, size);
      bytes.fill(0);
      const old = this.regions[i]!;
      this.descs.push({ gpa: BigInt(gpa), size: BigInt(size), uva: old.uva, mmapOffset: BigInt(at + GUARD) });
      at += chunks[i]!;
      return { gpa, size, uva: old.uva, buf, bytes };
    });
    this.regions.splice(0, this.regions.length, ...shared);
    const res = this.mem.replaceAll(shared.map((r, i) => ({ gpa: this.descs[i]!.gpa, size: this.descs[i]!.size, uva: r.uva, mmapOffset: this.descs[i]!.mmapOffset, bytes: r.bytes })));
    if ('error' in res) throw new Error(res.error);
  }

  /** The VMM virtual address of guest address `gpa` (SET_VRING_ADDR speaks these). */
  uva(gpa: number): bigint {
    const d = this.descs.find((r) => BigInt(gpa) >= r.gpa && BigInt(gpa) < r.gpa + r.size);
    if (!d) throw new Error(`test bug: gpa ${gpa.toString(16)} outside the guest`);
    return d.uva + (BigInt(gpa) - d.gpa);
  }

  release(): void {
    for (const r of this.regions) sys.unmapShared(r.buf);
    sys.close(this.memfd);
  }
}

export interface Reply { request: number; flags: number; payload: Buffer }

/** One message the VMM sends, and what it waits for. */
export interface Frame { request: number; flags: number; payload: Buffer; fds: number[]; reply: 'value' | 'ack' | null }

export interface PostOpts {
  indirect?: boolean;
  /** the request split over two readable descriptors (at byte 40) */
  splitReadable?: boolean;
  /** the request queue's vring index (default 1) */
  queue?: number;
}

export interface HandshakeOpts {
  /** ADD_MEM_REG (CONFIGURE_MEM_SLOTS, what QEMU 7.2 does) or SET_MEM_TABLE */
  memSlots?: boolean;
  eventIdx?: boolean;
  indirect?: boolean;
  /** each request queue's size (QEMU: 128) */
  num?: number;
}

/** The ring placement of the hiprio queue (queue 0): the low region, nothing ever posted there. */
const HIPRIO = { num: 8, desc: 0x1000, avail: 0x1080, used: 0x10c0 };
/** Where the request queues' areas start: FakeDriver's default ring address, in the high region. */
const REQUEST_AREAS = 0xc000;

export interface FakeVmmOpts {
  /** request queues the VMM sets up (vrings 1..requestQueues), beside the hiprio queue; default 1 */
  requestQueues?: number;
  /** a socket already connected to the back-end (FakeVmm.connect): used instead of a socketpair, and taken over */
  socket?: number;
}

export class FakeVmm {
  readonly sock: number;
  /**
   * The back-end's end of the socketpair: VhostUserConnection takes it over (and closes it). -1 for
   * a VMM connected to a server's socket (FakeVmm.connect): there is nothing to hand over.
   */
  readonly backFd: number;
  readonly guest: SharedGuest;
  /** request queues set up: vrings 1..requestQueues */
  readonly requestQueues: number;
  /** the test's ends of the queues' eventfds, indexed by vring: [hiprio, request 1, ..., request R] */
  readonly kick: number[];
  readonly call: number[];
  readonly err: number[];
  /** the request queues' drivers, drivers[k] for vring k + 1; empty until qemuFrames (or handshake) */
  drivers: FakeDriver[] = [];
  private readonly rx = Buffer.alloc(8192);
  private pending = Buffer.alloc(0);
  private closed = false;
  private extraFds: number[] = [];

  constructor(layout?: readonly { gpa: number; size: number }[], opts: FakeVmmOpts = {}) {
    this.requestQueues = opts.requestQueues ?? 1;
    if (!Number.isInteger(this.requestQueues) || this.requestQueues < 1) throw new Error(`test bug: ${this.requestQueues} request queues`);
    if (opts.socket === undefined) {
      [this.sock, this.backFd] = sys.socketpairUnix();
    } else {
      this.sock = opts.socket;
      this.backFd = -1;
    }
    this.guest = new SharedGuest(layout);
    const ev = (): number => sys.eventfdCreate(EFD_NONBLOCK | EFD_CLOEXEC);
    const queues = 1 + this.requestQueues;
    this.kick = Array.from({ length: queues }, ev);
    this.call = Array.from({ length: queues }, ev);
    this.err = Array.from({ length: queues }, ev);
  }

  /** A VMM connected to a back-end listening at `path` (sys.unixConnect), as QEMU's vhost-user socket chardev is. */
  static connect(path: string, layout?: readonly { gpa: number; size: number }[], opts: Omit<FakeVmmOpts, 'socket'> = {}): FakeVmm {
    const socket = sys.unixConnect(path);
    try {
      return new FakeVmm(layout, { ...opts, socket });
    } catch (e) {
      sys.close(socket);
      throw e;
    }
  }

  /** The first request queue's driver (vring 1), null before qemuFrames. */
  get driver(): FakeDriver | null {
    return this.drivers[0] ?? null;
  }

  /** The driver of request queue `queue` (its vring index, 1..requestQueues). */
  driverOf(queue: number): FakeDriver {
    const d = this.drivers[queue - 1];
    if (queue < 1 || d === undefined) throw new Error(`test bug: no driver for vring ${queue} (${this.drivers.length} request queues set up)`);
    return d;
  }

  /**
   * The areas of the request queues' drivers: the region holding REQUEST_AREAS, from there to its
   * end, cut into requestQueues equal page-aligned pieces.
   */
  private areas(): { at: number; end: number }[] {
    const r = this.guest.regions.find((x) => REQUEST_AREAS >= x.gpa && REQUEST_AREAS < x.gpa + x.size);
    if (!r) throw new Error(`test bug: no region holds ${REQUEST_AREAS.toString(16)}, where the request queues go`);
    const span = Math.floor((r.gpa + r.size - REQUEST_AREAS) / this.requestQueues / PAGE_SIZE) * PAGE_SIZE;
    return Array.from({ length: this.requestQueues }, (_, k) => ({ at: REQUEST_AREAS + k * span, end: REQUEST_AREAS + (k + 1) * span }));
  }

  /** An fd the test made for one case, closed with the rest. */
  own(fd: number): number {
    this.extraFds.push(fd);
    return fd;
  }

  /** Sends raw bytes (one sendmsg) with `fds`; false when the back-end's end is gone. */
  sendRaw(bytes: Buffer, fds: number[] = []): boolean {
    if (this.closed) return false;
    try {
      return sys.sendMsg(this.sock, bytes, 0, bytes.length, fds) === bytes.length;
    } catch {
      return false; // EPIPE, ECONNRESET: the back-end closed its end
    }
  }

  send(request: number, payload: Buffer = Buffer.alloc(0), opts: { flags?: number; fds?: number[] } = {}): boolean {
    return this.sendRaw(wire(request, payload, opts.flags ?? 0), opts.fds);
  }

  /** The next reply, 'closed' when the back-end closed its end, null after `ms` without one. */
  async reply(ms = 2000): Promise<Reply | 'closed' | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.pending.length >= HEADER_SIZE) {
        const size = this.pending.readUInt32LE(8);
        if (this.pending.length >= HEADER_SIZE + size) {
          const r = { request: this.pending.readUInt32LE(0), flags: this.pending.readUInt32LE(4), payload: Buffer.from(this.pending.subarray(HEADER_SIZE, HEADER_SIZE + size)) };
          this.pending = this.pending.subarray(HEADER_SIZE + size);
          return r;
        }
      }
      let got: ReturnType<typeof sys.recvMsg> = null;
      try {
        got = sys.recvMsg(this.sock, this.rx, 0, this.rx.length, 8);
      } catch {
        return 'closed'; // ECONNRESET
      }
      if (got !== null) {
        for (const f of got.fds) sys.close(f);
        if (got.n === 0) return 'closed';
        this.pending = Buffer.concat([this.pending, this.rx.subarray(0, got.n)]);
        continue;
      }
      if (Date.now() > deadline) return null;
      await sleep(1);
    }
  }

  /** A request that waits for a value: the reply's u64, or throws. */
  async get(request: number, payload?: Buffer): Promise<bigint> {
    this.send(request, payload);
    const r = await this.reply();
    if (r === null || r === 'closed') throw new Error(`no reply to request ${request}: ${String(r)}`);
    if (r.request !== request || (r.flags & FLAG_REPLY) === 0) throw new Error(`unexpected reply ${JSON.stringify(r)}`);
    return r.payload.length === 8 ? r.payload.readBigUInt64LE(0) : BigInt(r.payload.readUInt32LE(4));
  }

  /** A NEED_REPLY message: the REPLY_ACK value (0 = success), or throws when none came. */
  async acked(request: number, payload: Buffer = Buffer.alloc(0), fds: number[] = []): Promise<bigint> {
    this.send(request, payload, { flags: FLAG_NEED_REPLY, fds });
    const r = await this.reply();
    if (r === null || r === 'closed') throw new Error(`no ack to request ${request}: ${String(r)}`);
    if (r.request !== request) throw new Error(`ack for ${r.request}, expected ${request}`);
    return r.payload.readBigUInt64LE(0);
  }

  /** Waits until the back-end has processed everything sent so far (a value request answers in order). */
  async barrier(): Promise<void> {
    await this.get(Req.GET_QUEUE_NUM);
  }

  vringFd(request: number, index: number, fd: number | null): boolean {
    return this.send(request, u64(BigInt(index | (fd === null ? VRING_NOFD_MASK : 0))), { fds: fd === null ? [] : [fd] });
  }

  addrPayload(index: number, desc: number, avail: number, used: number): Buffer {
    const g = this.guest;
    return Buffer.concat([u32(index, 0), u64(g.uva(desc), g.uva(used), g.uva(avail), 0n)]);
  }

  memTablePayload(regions: readonly VmmRegion[]): Buffer {
    return Buffer.concat([u32(regions.length, 0), ...regions.map(regionBytes)]);
  }

  /**
   * The QEMU 7.2 sequence (VIRTIO-FS.md) up to every queue enabled, as frames (what each expects
   * back: a value, an ack or nothing); fresh drivers of the request queues become `drivers`.
   */
  qemuFrames(o: HandshakeOpts = {}): Frame[] {
    const memSlots = o.memSlots ?? true;
    const g = this.guest;
    this.drivers = this.areas().map(({ at, end }) =>
      new FakeDriver(g, { num: o.num ?? 128, eventIdx: o.eventIdx ?? true, indirect: o.indirect ?? true, at, end }));
    const vrings = [...this.kick.keys()];
    const f = (request: number, payload: Buffer = Buffer.alloc(0), reply: Frame['reply'] = null, fds: number[] = []): Frame =>
      ({ request, flags: reply === 'ack' ? FLAG_NEED_REPLY : 0, payload, fds, reply });
    const vfd = (request: number, i: number, fd: number): Frame => f(request, u64(BigInt(i)), null, [fd]);
    const features = featureMask(Feature.VIRTIO_F_VERSION_1, Feature.VHOST_USER_F_PROTOCOL_FEATURES,
      ...(o.eventIdx ?? true ? [Feature.VIRTIO_RING_F_EVENT_IDX] : []), ...(o.indirect ?? true ? [Feature.VIRTIO_RING_F_INDIRECT_DESC] : []));
    const rings = [HIPRIO, ...this.drivers.map((d) => ({ num: d.num, desc: d.desc, avail: d.avail, used: d.used }))];
    return [
      f(Req.GET_FEATURES, undefined, 'value'),
      f(Req.GET_PROTOCOL_FEATURES, undefined, 'value'),
      f(Req.SET_PROTOCOL_FEATURES, u64(featureMask(ProtocolFeature.REPLY_ACK, ...(memSlots ? [ProtocolFeature.CONFIGURE_MEM_SLOTS] : [])))),
      f(Req.GET_QUEUE_NUM, undefined, 'value'),
      f(Req.GET_MAX_MEM_SLOTS, undefined, 'value'),
      f(Req.SET_OWNER),
      f(Req.GET_FEATURES, undefined, 'value'),
      ...vrings.map((i) => vfd(Req.SET_VRING_CALL, i, this.call[i]!)),
      ...vrings.map((i) => vfd(Req.SET_VRING_ERR, i, this.err[i]!)),
      f(Req.SET_FEATURES, u64(features)),
      ...(memSlots
        ? g.descs.map((r) => f(Req.ADD_MEM_REG, Buffer.concat([u64(0n), regionBytes(r)]), 'ack', [g.memfd]))
        : [f(Req.SET_MEM_TABLE, this.memTablePayload(g.descs), 'ack', g.descs.map(() => g.memfd))]),
      ...rings.flatMap((q, i) => [
        f(Req.SET_VRING_NUM, u32(i, q.num)),
        f(Req.SET_VRING_BASE, u32(i, 0)),
        f(Req.SET_VRING_ADDR, this.addrPayload(i, q.desc, q.avail, q.used)),
        vfd(Req.SET_VRING_KICK, i, this.kick[i]!),
      ]),
      ...vrings.map((i) => f(Req.SET_VRING_ENABLE, u32(i, 1))),
      ...vrings.map((i) => vfd(Req.SET_VRING_CALL, i, this.call[i]!)),
    ];
  }

  sendFrame(fr: Frame): boolean {
    return this.sendRaw(Buffer.concat([u32(fr.request, fr.flags | 0x1, fr.payload.length), fr.payload]), fr.fds);
  }

  /**
   * The QEMU handshake, each value and ack checked (the back-end must offer at least the queues set
   * up; it may offer more); returns the first request queue's driver.
   */
  async handshake(o: HandshakeOpts = {}): Promise<FakeDriver> {
    for (const fr of this.qemuFrames(o)) {
      this.sendFrame(fr);
      if (fr.reply === null) continue;
      const r = await this.reply();
      if (r === null || r === 'closed' || r.request !== fr.request || (r.flags & FLAG_REPLY) === 0) {
        throw new Error(`no reply to request ${fr.request}: ${JSON.stringify(r)}`);
      }
      if (fr.request === Req.GET_QUEUE_NUM && r.payload.readBigUInt64LE(0) < BigInt(1 + this.requestQueues)) {
        throw new Error(`expected at least ${1 + this.requestQueues} queues, the back-end offers ${r.payload.readBigUInt64LE(0)}`);
      }
      if (fr.reply === 'ack' && r.payload.readBigUInt64LE(0) !== 0n) throw new Error(`request ${fr.request} refused`);
    }
    await this.barrier();
    return this.driver!;
  }

  /**
   * Posts one request chain on request queue `o.queue` (its vring index, default 1): `req`
   * readable, `room` bytes of writable reply space with `GUARD` guard bytes either side; kicks.
   * Returns where the reply space is.
   */
  post(req: Buffer, room: number, o: PostOpts = {}): { head: number; out: number } {
    const queue = o.queue ?? 1;
    const d = this.driverOf(queue);
    const inAt = d.alloc(req.length);
    this.guest.write(inAt, req);
    const outAt = d.alloc(room + 2 * GUARD, GUARD_BYTE) + GUARD;
    const readable: Buf[] = o.splitReadable && req.length > 40
      ? [{ gpa: inAt, len: 40 }, { gpa: inAt + 40, len: req.length - 40 }]
      : [{ gpa: inAt, len: req.length }];
    const bufs: Buf[] = [...readable, ...(room > 0 ? [{ gpa: outAt, len: room, write: true }] : [])];
    const head = o.indirect ? d.indirectChain(bufs) : d.chain(bufs);
    if (d.opts.eventIdx) d.setUsedEvent(d.usedSeen);
    d.post(head);
    sys.eventfdWrite(this.kick[queue]!, 1);
    return { head, out: outAt };
  }

  /** Whether the GUARD bytes around a reply space at `out` of `room` bytes are intact. */
  guardsAround(out: number, room: number): boolean {
    const before = this.guest.read(out - GUARD, GUARD);
    const after = this.guest.read(out + room, GUARD);
    return before.every((b) => b === GUARD_BYTE) && after.every((b) => b === GUARD_BYTE);
  }

  /**
   * Used entries of request queue `queue` (its vring index), waiting up to `ms` for at least `n`;
   * and whether its call eventfd fired.
   */
  async used(n = 1, ms = 3000, queue = 1): Promise<{ used: [number, number][]; called: boolean }> {
    const d = this.driverOf(queue);
    const deadline = Date.now() + ms;
    const used: [number, number][] = [];
    let called = false;
    for (;;) {
      if (sys.eventfdRead(this.call[queue]!) !== null) called = true;
      used.push(...d.takeUsed());
      if (used.length >= n || Date.now() > deadline) break;
      await sleep(1);
    }
    // a back-end in another process (or thread) signals after it published the used entry: the
    // interrupt may come a moment after the entry was seen
    const late = Date.now() + 500;
    while (used.length > 0 && !called && Date.now() < late) {
      await sleep(1);
      if (sys.eventfdRead(this.call[queue]!) !== null) called = true;
    }
    return { used, called };
  }

  /** One request on request queue `o.queue` (default vring 1), its reply (null when no used entry came). */
  async request(req: Buffer, room = 4096, o: PostOpts = {}): Promise<{ reply: Buffer; len: number; called: boolean; guards: boolean } | null> {
    const { head, out } = this.post(req, room, o);
    const { used, called } = await this.used(1, undefined, o.queue);
    if (used.length === 0) return null;
    const [[id, len]] = used as [[number, number]];
    if (id !== head) throw new Error(`used id ${id}, expected ${head}`);
    return { reply: this.guest.read(out, Math.min(len, room)), len, called, guards: this.guardsAround(out, room) };
  }

  /** Closes the VMM's socket end (the back-end sees EOF). */
  hangUp(): void {
    if (this.closed) return;
    this.closed = true;
    sys.close(this.sock);
  }

  /** Closes every fd the test holds and unmaps the guest (the back-end's end is its own business). */
  release(): void {
    this.hangUp();
    for (const f of [...this.kick, ...this.call, ...this.err, ...this.extraFds]) sys.close(f);
    this.extraFds = [];
    this.guest.release();
  }
}

/**
 * A FakeVmm connected to a server that is starting: the socket file appears at bind(), before
 * listen(), so a connect refused (or the file not there yet) is tried again, for up to `ms`.
 */
export async function connectWhenListening(path: string, layout?: readonly { gpa: number; size: number }[], opts: Omit<FakeVmmOpts, 'socket'> = {}, ms = 10_000): Promise<FakeVmm> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return FakeVmm.connect(path, layout, opts);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || Date.now() > end) throw e;
    }
    await sleep(20);
  }
}
