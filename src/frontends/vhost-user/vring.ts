/**
 * The device side of a split virtqueue (virtio 1.x, section 2.7) over guest memory shared by the
 * VMM. The guest is untrusted: every index, address, length, flag and chain shape is checked before
 * use, each descriptor is read once into locals (the guest may rewrite the table while we walk it:
 * checks and use act on the same copy), and a queue that met a malformed chain stays `broken` with
 * the reason (the device is then in the "needs reset" state; the caller stops serving it).
 *
 * Zero-length descriptors are skipped: they add no view, their address is not checked (they touch
 * no memory), but their WRITE flag still counts for the "readable after writable" rule.
 *
 * Ordering. The rings live in memory the guest's vCPUs write concurrently. The avail idx is read
 * and the used idx written with Atomics on aligned Uint16Array views (allowed on non-shared
 * buffers): V8 never eliminates, merges or reorders an Atomics access with the plain accesses
 * around it, and it compiles them sequentially consistent (on x86-64 a load is a plain mov, which
 * TSO already orders before the later ring reads; a store is an xchg, a full barrier). So:
 * - the avail ring entry and the descriptors are read after the avail idx that published them;
 * - a used element (plain stores) is visible before the used idx store that publishes it;
 * - the used idx store is ordered before the used_event / avail flags load of shouldNotify()
 *   (store-load: the case TSO alone does not cover; the xchg does), and the avail_event store
 *   before the avail idx re-read of the next pop().
 * Typed arrays are native-endian, the rings little-endian: create() refuses big-endian hosts.
 */
import type { GuestMemory } from './guest-memory.js';

export const VRING_DESC_F_NEXT = 1;
export const VRING_DESC_F_WRITE = 2;
export const VRING_DESC_F_INDIRECT = 4;
export const VRING_USED_F_NO_NOTIFY = 1;
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
export const MAX_QUEUE_SIZE = 32768;
/** A chain's total length may not exceed this by default (the spec's 2^32 limit; used.len is a u32). */
export const DEFAULT_MAX_CHAIN_BYTES = 0xffffffff;

export interface QueueConfig {
  /** Queue size: a power of two, 1..32768 (SET_VRING_NUM). */
  readonly num: number;
  /** Guest-physical addresses of the three rings (SET_VRING_ADDR, translated with uvaToGpa). */
  readonly desc: bigint;
  readonly avail: bigint;
  readonly used: bigint;
  /** Negotiated VIRTIO_RING_F_EVENT_IDX and VIRTIO_RING_F_INDIRECT_DESC. */
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** SET_VRING_BASE: the next avail index to process. */
  readonly lastAvail: number;
  /** Bound on a chain's total length (readable + writable); default DEFAULT_MAX_CHAIN_BYTES. */
  readonly maxChainBytes?: number;
}

/**
 * One popped request. `readable` views hold the driver's data (device-readable), `writable` ones
 * the reply space, in chain order; they alias guest memory (copy what must not change under you).
 */
export interface Chain {
  readonly head: number;
  readonly readable: Uint8Array[];
  readonly writable: Uint8Array[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

export interface Broken { readonly broken: string }

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The u16 index of ring byte offset `byteOff` in a Uint16Array view (all callers pass even offsets). */
const u16 = (byteOff: number): number => byteOff >>> 1;

/** vring_need_event(): has `newIdx` passed `event` since `oldIdx` (all mod 2^16)? */
export function needEvent(event: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

/** A descriptor's u64 address from its halves: a number below 2^53 (every real guest), a bigint above. */
const descAddr = (lo: number, hi: number): number | bigint =>
  hi < 0x200000 ? hi * 0x100000000 + lo : (BigInt(hi) << 32n) | BigInt(lo);

interface Rings {
  readonly desc: DataView;
  readonly descBytes: Uint8Array;
  readonly avail16: Uint16Array;
  readonly availBytes: Uint8Array;
  readonly used16: Uint16Array;
  readonly used32: Uint32Array;
  readonly usedBytes: Uint8Array;
}

function isPow2(n: number): boolean { return Number.isInteger(n) && n >= 1 && n <= MAX_QUEUE_SIZE && (n & (n - 1)) === 0; }

/** The contiguous view of one ring, or why not. */
function ringView(mem: GuestMemory, what: string, gpa: bigint, len: number, align: number): Uint8Array | string {
  if (typeof gpa !== 'bigint' || gpa < 0n) return `${what} ring address is invalid`;
  if (gpa % BigInt(align) !== 0n) return `${what} ring is not ${align}-byte aligned`;
  if (gpa + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) return `${what} ring is outside guest memory`;
  const v = mem.translateOne(Number(gpa), len);
  if (v === null) return `${what} ring is outside guest memory (or not within one region)`;
  if ((v.byteOffset & (align - 1)) !== 0) return `${what} ring is not ${align}-byte aligned in the mapping`;
  return v;
}

export class SplitQueue {
  private lastAvail: number;
  private usedIdx: number;
  private signalledUsed = 0;
  private signalledValid = false;
  private brokenReason: string | null = null;
  private readonly mask: number;
  private readonly maxChainBytes: number;

  private constructor(
    private readonly mem: GuestMemory,
    private readonly rings: Rings,
    readonly num: number,
    readonly eventIdx: boolean,
    readonly indirect: boolean,
    lastAvail: number,
    maxChainBytes: number,
  ) {
    this.mask = num - 1;
    this.lastAvail = lastAvail;
    this.maxChainBytes = maxChainBytes;
    // The used idx continues from what the ring holds (0 on a fresh ring; the device's own count
    // when a queue is rebuilt after a memory table change).
    this.usedIdx = Atomics.load(rings.used16, 1);
    this.signalledUsed = this.usedIdx;
  }

  /** Validates the configuration and ring placement; a queue, or `{ error }`. */
  static create(mem: GuestMemory, cfg: QueueConfig): SplitQueue | { error: string } {
    if (!LITTLE_ENDIAN) return { error: 'big-endian hosts are not supported' };
    const { num, eventIdx, indirect, lastAvail } = cfg;
    if (!isPow2(num)) return { error: `queue size ${String(num)} is not a power of two in 1..${MAX_QUEUE_SIZE}` };
    if (!Number.isInteger(lastAvail) || lastAvail < 0 || lastAvail > 0xffff) return { error: 'vring base is not a 16-bit index' };
    const maxChainBytes = cfg.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES;
    if (!Number.isSafeInteger(maxChainBytes) || maxChainBytes < 1) throw new RangeError('maxChainBytes must be a positive integer');
    const desc = ringView(mem, 'descriptor', cfg.desc, 16 * num, 16);
    if (typeof desc === 'string') return { error: desc };
    const avail = ringView(mem, 'avail', cfg.avail, 6 + 2 * num, 2);
    if (typeof avail === 'string') return { error: avail };
    const used = ringView(mem, 'used', cfg.used, 6 + 8 * num, 4);
    if (typeof used === 'string') return { error: used };
    const rings: Rings = {
      desc: new DataView(desc.buffer, desc.byteOffset, desc.byteLength),
      descBytes: desc,
      avail16: new Uint16Array(avail.buffer, avail.byteOffset, avail.byteLength >>> 1),
      availBytes: avail,
      used16: new Uint16Array(used.buffer, used.byteOffset, used.byteLength >>> 1),
      used32: new Uint32Array(used.buffer, used.byteOffset, (used.byteLength - 2) >>> 2),
      usedBytes: used,
    };
    return new SplitQueue(mem, rings, num, !!eventIdx, !!indirect, lastAvail, maxChainBytes);
  }

  /** The next avail index to process (GET_VRING_BASE). */
  get lastAvailIdx(): number { return this.lastAvail; }

  /** The used idx this device last published. */
  get lastUsedIdx(): number { return this.usedIdx; }

  /** Why the queue stopped, or null. */
  get broken(): string | null { return this.brokenReason; }

  /**
   * The next available chain, null when the ring is empty, or `{ broken }` (sticky) when the ring
   * or the chain is malformed or the ring memory was unmapped.
   */
  pop(): Chain | Broken | null {
    if (this.brokenReason !== null) return { broken: this.brokenReason };
    const r = this.rings;
    if (this.detached()) return this.fail('ring memory is no longer mapped');
    const availIdx = Atomics.load(r.avail16, 1);
    if (availIdx === this.lastAvail) return null;
    const pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending > this.num) return this.fail(`avail index moved by ${pending}, more than the queue size ${this.num}`);
    const head = r.avail16[2 + (this.lastAvail & this.mask)]!;
    if (head >= this.num) return this.fail(`head index ${head} is out of range (queue size ${this.num})`);
    const chain = this.walk(head);
    if ('broken' in chain) return this.fail(chain.broken);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return chain;
  }

  /**
   * The chain at `head` again, without taking anything from the avail ring: a successor answering
   * the chains its predecessor took and never answered (their descriptors stay the device's until
   * they are used). The same checks as pop(); a bad chain is `{ broken }` without breaking the queue.
   */
  chainAt(head: number): Chain | Broken {
    if (this.brokenReason !== null) return { broken: this.brokenReason };
    if (this.detached()) return { broken: 'ring memory is no longer mapped' };
    if (!Number.isInteger(head) || head < 0 || head >= this.num) return { broken: `head index ${head} is out of range` };
    return this.walk(head);
  }

  /** Returns chain `head` with `writtenLen` bytes written to the driver. */
  pushUsed(head: number, writtenLen: number): Broken | null {
    if (!Number.isInteger(head) || head < 0 || head >= this.num) throw new RangeError(`head ${head} is not a descriptor index`);
    if (!Number.isInteger(writtenLen) || writtenLen < 0 || writtenLen > 0xffffffff) throw new RangeError('used length is not a u32');
    if (this.brokenReason !== null) return { broken: this.brokenReason };
    if (this.detached()) return this.fail('ring memory is no longer mapped');
    const r = this.rings;
    const slot = 1 + 2 * (this.usedIdx & this.mask); // u32 index of used.ring[slot].id (byte 4 + 8 * slot)
    r.used32[slot] = head;
    r.used32[slot + 1] = writtenLen;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    Atomics.store(r.used16, 1, this.usedIdx);
    return null;
  }

  /**
   * Whether the driver wants an interrupt (call eventfd) for the used entries pushed since the last
   * call. EVENT_IDX: vring_need_event(used_event, used idx, used idx at the previous call) (always
   * true the first time); otherwise unless the driver set VRING_AVAIL_F_NO_INTERRUPT.
   * False when the ring memory is gone.
   */
  shouldNotify(): boolean {
    if (this.detached()) return false;
    const r = this.rings;
    if (!this.eventIdx) return (Atomics.load(r.avail16, 0) & VRING_AVAIL_F_NO_INTERRUPT) === 0;
    const old = this.signalledUsed;
    const valid = this.signalledValid;
    this.signalledUsed = this.usedIdx;
    this.signalledValid = true;
    if (!valid) return true;
    return needEvent(Atomics.load(r.avail16, u16(4 + 2 * this.num)), this.usedIdx, old);
  }

  /**
   * EVENT_IDX: asks the driver to kick when it makes index `lastAvailIdx` available (avail_event =
   * the next index to process). Call it when the ring looks empty, then pop() once more before
   * sleeping on the kick eventfd (a chain posted in between would otherwise wait for the next kick).
   */
  updateAvailEvent(): void {
    if (!this.eventIdx || this.detached()) return;
    Atomics.store(this.rings.used16, u16(4 + 8 * this.num), this.lastAvail);
  }

  private fail(reason: string): Broken {
    this.brokenReason = reason;
    return { broken: reason };
  }

  private detached(): boolean {
    const r = this.rings;
    return r.descBytes.byteLength === 0 || r.availBytes.byteLength === 0 || r.usedBytes.byteLength === 0;
  }

  /** Walks the chain starting at `head` of the main table (head < num). */
  private walk(head: number): Chain | Broken {
    const readable: Uint8Array[] = [];
    const writable: Uint8Array[] = [];
    let readableBytes = 0;
    let writableBytes = 0;
    let table = this.rings.desc;
    let tableLen = this.num;
    let inIndirect = false;
    let seenWritable = false;
    let idx = head;
    let count = 0;
    for (;;) {
      if (++count > tableLen) return { broken: inIndirect ? 'indirect descriptor chain loops' : 'descriptor chain loops' };
      const at = idx * 16;
      const lo = table.getUint32(at, true);
      const hi = table.getUint32(at + 4, true);
      const len = table.getUint32(at + 8, true);
      const flags = table.getUint16(at + 12, true);
      const next = table.getUint16(at + 14, true);
      if ((flags & VRING_DESC_F_INDIRECT) !== 0) {
        if (!this.indirect) return { broken: 'indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC' };
        if (inIndirect) return { broken: 'nested indirect descriptor' };
        if ((flags & VRING_DESC_F_NEXT) !== 0) return { broken: 'indirect descriptor with NEXT' };
        if (len === 0 || len % 16 !== 0) return { broken: `indirect table length ${len} is not a positive multiple of 16` };
        const t = this.indirectTable(lo, hi, len);
        if (t === null) return { broken: 'indirect table is outside guest memory' };
        table = t;
        tableLen = len / 16;
        inIndirect = true;
        idx = 0;
        count = 0;
        continue;
      }
      const write = (flags & VRING_DESC_F_WRITE) !== 0;
      if (write) {
        seenWritable = true;
        writableBytes += len;
      } else {
        if (seenWritable) return { broken: 'device-readable descriptor after a device-writable one' };
        readableBytes += len;
      }
      if (readableBytes + writableBytes > this.maxChainBytes) {
        return { broken: `descriptor chain is longer than ${this.maxChainBytes} bytes` };
      }
      if (len !== 0) {
        const views = this.mem.translate(descAddr(lo, hi), len);
        if (views === null) return { broken: 'descriptor buffer is outside guest memory' };
        const into = write ? writable : readable;
        for (const v of views) into.push(v);
      }
      if ((flags & VRING_DESC_F_NEXT) === 0) break;
      if (next >= tableLen) return { broken: `next index ${next} is out of range (table of ${tableLen})` };
      idx = next;
    }
    return { head, readable, writable, readableBytes, writableBytes };
  }

  /** A DataView of the indirect table at (hi:lo, len); copied when it spans two regions. */
  private indirectTable(lo: number, hi: number, len: number): DataView | null {
    const views = this.mem.translate(descAddr(lo, hi), len);
    if (views === null) return null;
    if (views.length === 1) return new DataView(views[0]!.buffer, views[0]!.byteOffset, len);
    const copy = new Uint8Array(len);
    let o = 0;
    for (const v of views) { copy.set(v, o); o += v.byteLength; }
    return new DataView(copy.buffer);
  }
}

/** Copies `views` into one Buffer (gather); null when a view has been unmapped (detached) since the pop. */
export function readAll(views: readonly Uint8Array[]): Buffer | null {
  let total = 0;
  for (const v of views) {
    if (v.byteLength === 0) return null;
    total += v.byteLength;
  }
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (const v of views) {
    out.set(v, o);
    o += v.byteLength;
  }
  return out;
}

/**
 * `views` restricted to bytes [offset, offset + length) of their concatenation (e.g. the writable
 * space after the reply header); shorter when the views are. Views of unmapped memory are empty.
 */
export function sliceViews(views: readonly Uint8Array[], offset: number, length = Infinity): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = Math.max(0, offset);
  let left = length;
  for (const v of views) {
    if (left <= 0) break;
    const n = v.byteLength;
    if (skip >= n) {
      skip -= n;
      continue;
    }
    const take = Math.min(n - skip, left);
    out.push(v.subarray(skip, skip + take));
    left -= take;
    skip = 0;
  }
  return out;
}

/**
 * Where views point, for a zero-copy preadv/pwritev by the native layer: each view's ArrayBuffer
 * (one per mapped region), byte offset into it and length. The same as reading `.buffer`,
 * `.byteOffset` and `.byteLength` off each view; a detached view has length 0.
 */
export interface Segment {
  readonly buffer: ArrayBufferLike;
  readonly offset: number;
  readonly length: number;
}
export const segments = (views: readonly Uint8Array[]): Segment[] =>
  views.map((v) => ({ buffer: v.buffer, offset: v.byteOffset, length: v.byteLength }));

/** Scatters reply bytes over a chain's writable views, in order. */
export class ChainWriter {
  private view = 0;
  private at = 0;
  private total = 0;

  constructor(private readonly views: readonly Uint8Array[]) {}

  /** Bytes written so far (the used length to push). */
  get written(): number { return this.total; }

  /** Room left, not counting views unmapped since the pop. */
  get remaining(): number {
    let n = -this.at;
    for (let i = this.view; i < this.views.length; i++) n += this.views[i]!.byteLength;
    return Math.max(0, n);
  }

  /** Copies as much of `src` as fits; returns the count (short when the space ends or is unmapped). */
  write(src: Uint8Array): number {
    let done = 0;
    while (done < src.length && this.view < this.views.length) {
      const v = this.views[this.view]!;
      const room = v.byteLength - this.at;
      if (room <= 0) {
        if (v.byteLength === 0) break; // unmapped: stop rather than skip part of the reply
        this.view++;
        this.at = 0;
        continue;
      }
      const n = Math.min(room, src.length - done);
      v.set(src.subarray(done, done + n), this.at);
      this.at += n;
      done += n;
    }
    this.total += done;
    return done;
  }
}
