/**
 * A fake VMM + guest virtio driver for the vhost-user unit tests: guest RAM as separate
 * ArrayBuffers (one per "mmap"), each with guard bytes before and after the region's view, laid out
 * like a real small guest (a low region, the VGA-style hole, a high region, and optionally an
 * adjacent hot-plugged one); and a split-queue driver that writes descriptors, posts chains and
 * reads the used ring exactly as the spec tells a driver to.
 */
import { GuestMemory } from '../../src/frontends/vhost-user/guest-memory.js';
import {
  SplitQueue, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
} from '../../src/frontends/vhost-user/vring.js';

export const GUARD = 64;
export const GUARD_BYTE = 0xa5;
export const UVA_BASE = 0x7f12_0000_0000n;

export interface FakeRegion {
  readonly gpa: number;
  readonly size: number;
  readonly uva: bigint;
  buf: ArrayBuffer;
  readonly bytes: Uint8Array;
}

/** Low RAM, a hole at 0xa000-0xc000 (the 1 GiB guest's 0xa0000-0xc0000, scaled down), high RAM. */
export const DEFAULT_LAYOUT = [{ gpa: 0, size: 0xa000 }, { gpa: 0xc000, size: 0x34000 }];
/** The same plus a region adjacent to the high one (a hot-plugged DIMM): buffers may span the two. */
export const ADJACENT_LAYOUT = [...DEFAULT_LAYOUT, { gpa: 0x40000, size: 0x10000 }];

export class FakeGuest {
  readonly mem = new GuestMemory();
  readonly regions: FakeRegion[] = [];

  constructor(layout: readonly { gpa: number; size: number }[] = DEFAULT_LAYOUT) {
    for (const { gpa, size } of layout) {
      const buf = new ArrayBuffer(GUARD + size + GUARD);
      new Uint8Array(buf).fill(GUARD_BYTE);
      const bytes = new Uint8Array(buf, GUARD, size);
      bytes.fill(0);
      const r: FakeRegion = { gpa, size, uva: UVA_BASE + BigInt(gpa) * 2n, buf, bytes };
      this.regions.push(r);
      const err = this.mem.add({ gpa: BigInt(gpa), size: BigInt(size), uva: r.uva, mmapOffset: 0n, bytes });
      if (err) throw new Error(err.error);
    }
  }

  /** The region and offset of guest address `gpa` (the test's own accesses: must be inside). */
  private at(gpa: number, len: number): { r: FakeRegion; off: number } {
    const r = this.regions.find((x) => gpa >= x.gpa && gpa + len <= x.gpa + x.size);
    if (!r) throw new Error(`test bug: ${gpa.toString(16)}+${len} outside the fake guest's RAM`);
    return { r, off: gpa - r.gpa };
  }
  private dv(gpa: number, len: number): DataView {
    const { r, off } = this.at(gpa, len);
    return new DataView(r.buf, GUARD + off, len);
  }
  w16(gpa: number, v: number): void { this.dv(gpa, 2).setUint16(0, v, true); }
  w32(gpa: number, v: number): void { this.dv(gpa, 4).setUint32(0, v, true); }
  w64(gpa: number, v: bigint): void { this.dv(gpa, 8).setBigUint64(0, v, true); }
  r16(gpa: number): number { return this.dv(gpa, 2).getUint16(0, true); }
  r32(gpa: number): number { return this.dv(gpa, 4).getUint32(0, true); }
  write(gpa: number, data: Uint8Array): void {
    const { r, off } = this.at(gpa, data.length);
    r.bytes.set(data, off);
  }
  read(gpa: number, len: number): Buffer {
    const { r, off } = this.at(gpa, len);
    return Buffer.from(r.bytes.subarray(off, off + len));
  }

  /** Every guard byte still holds GUARD_BYTE (nothing wrote outside a region's view). */
  guardsIntact(): boolean {
    return this.regions.every((r) => {
      if (r.buf.byteLength === 0) return true;
      const all = new Uint8Array(r.buf);
      for (let i = 0; i < GUARD; i++) if (all[i] !== GUARD_BYTE || all[GUARD + r.size + i] !== GUARD_BYTE) return false;
      return true;
    });
  }

  /** Whether `v` is a non-empty view inside one region's bytes (never a guard byte). */
  inRegion(v: Uint8Array): boolean {
    return v.byteLength > 0 && this.regions.some((r) =>
      v.buffer === r.buf && v.byteOffset >= GUARD && v.byteOffset + v.byteLength <= GUARD + r.size);
  }

  /** Unmaps region `i` the way the native layer does: its ArrayBuffer becomes detached. */
  detach(i: number): void {
    const r = this.regions[i]!;
    structuredClone(r.buf, { transfer: [r.buf] });
  }
}

export interface Buf { gpa: number; len: number; write?: boolean }
export interface QueueOpts {
  num?: number;
  eventIdx?: boolean;
  indirect?: boolean;
  base?: number;
  maxChainBytes?: number;
  /** where the desc table starts, 16-byte aligned (default 0xc000, the start of the high region); the avail and used rings follow it */
  at?: number;
  /** the first address past this driver's area: an alloc reaching past it throws (default: only the region's end bounds the heap) */
  end?: number;
}

/**
 * The driver side of one split queue: its rings at `at` (by default the start of the fake guest's
 * high region), then its heap of data and indirect tables up to `end`. Drivers sharing a guest are
 * given disjoint areas.
 */
export class FakeDriver {
  readonly num: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  availIdx: number;
  usedSeen: number;
  /** Every indirect table written, [gpa, entries] (for tests that corrupt them). */
  readonly tables: [number, number][] = [];
  private nextDesc = 0;
  /** Data and indirect tables are bump-allocated from here. */
  private heap: number;
  private readonly end: number;

  constructor(readonly g: FakeGuest, readonly opts: QueueOpts = {}) {
    this.num = opts.num ?? 8;
    this.desc = opts.at ?? 0xc000;
    if (this.desc % 16 !== 0) throw new Error(`test bug: desc table at ${this.desc.toString(16)} is not 16-byte aligned`);
    this.avail = this.desc + 16 * this.num;
    this.used = (this.avail + 6 + 2 * this.num + 3) & ~3;
    this.heap = (this.used + 6 + 8 * this.num + 0xfff) & ~0xfff;
    this.end = opts.end ?? Infinity;
    if (this.heap > this.end) throw new Error(`test bug: the rings of ${this.num} entries do not fit below ${this.end.toString(16)}`);
    this.availIdx = opts.base ?? 0;
    this.usedSeen = opts.base ?? 0;
    g.w16(this.avail + 2, this.availIdx);
    g.w16(this.used + 2, this.usedSeen);
  }

  queue(): SplitQueue {
    const q = SplitQueue.create(this.g.mem, {
      num: this.num, desc: BigInt(this.desc), avail: BigInt(this.avail), used: BigInt(this.used),
      eventIdx: this.opts.eventIdx ?? false, indirect: this.opts.indirect ?? false, lastAvail: this.opts.base ?? 0,
      maxChainBytes: this.opts.maxChainBytes,
    });
    if ('error' in q) throw new Error(q.error);
    return q;
  }

  /** A buffer of `len` bytes filled with `fill` (or zero), 16-byte aligned, from the heap. */
  alloc(len: number, fill = 0): number {
    const gpa = this.heap;
    if (gpa + len > this.end) throw new Error(`test bug: ${len} bytes at ${gpa.toString(16)} pass the driver's area (end ${this.end.toString(16)})`);
    this.heap = (this.heap + len + 15) & ~15;
    if (len > 0) this.g.write(gpa, new Uint8Array(len).fill(fill));
    return gpa;
  }

  /** Writes descriptor `i` of the table at `table` (default: the ring's). */
  setDesc(i: number, addr: number | bigint, len: number, flags: number, next: number, table = this.desc): void {
    const at = table + 16 * i;
    this.g.w64(at, BigInt(addr));
    this.g.w32(at + 8, len);
    this.g.w16(at + 12, flags);
    this.g.w16(at + 14, next);
  }

  /** Takes `n` consecutive ring descriptor indices (wrapping; the tests never hold more than num at once). */
  takeDescs(n: number): number[] {
    return Array.from({ length: n }, () => { const i = this.nextDesc; this.nextDesc = (this.nextDesc + 1) % this.num; return i; });
  }

  /** Writes `bufs` as a chain at ring indices `idx` (or fresh ones); returns the head. */
  chain(bufs: readonly Buf[], idx = this.takeDescs(bufs.length), table = this.desc): number {
    bufs.forEach((b, k) => {
      const last = k === bufs.length - 1;
      this.setDesc(idx[k]!, b.gpa, b.len, (b.write ? VRING_DESC_F_WRITE : 0) | (last ? 0 : VRING_DESC_F_NEXT), last ? 0 : idx[k + 1]!, table);
    });
    return idx[0]!;
  }

  /** An indirect table holding `bufs`; returns the ring head descriptor that points at it. */
  indirectChain(bufs: readonly Buf[], before: readonly Buf[] = []): number {
    const table = this.alloc(16 * bufs.length);
    this.tables.push([table, bufs.length]);
    this.chain(bufs, bufs.map((_, k) => k), table);
    const idx = this.takeDescs(before.length + 1);
    if (before.length > 0) {
      this.chain(before, idx.slice(0, before.length));
      this.setDesc(idx[before.length - 1]!, before.at(-1)!.gpa, before.at(-1)!.len,
        (before.at(-1)!.write ? VRING_DESC_F_WRITE : 0) | VRING_DESC_F_NEXT, idx[before.length]!);
    }
    this.setDesc(idx[before.length]!, table, 16 * bufs.length, VRING_DESC_F_INDIRECT, 0);
    return idx[0]!;
  }

  /** Makes `head` available: ring entry, then (after it) the avail idx. */
  post(...heads: number[]): void {
    for (const h of heads) {
      this.g.w16(this.avail + 4 + 2 * (this.availIdx % this.num), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.g.w16(this.avail + 2, this.availIdx);
  }

  /** Used entries published since the last call: [id, len] pairs. */
  takeUsed(): [number, number][] {
    const idx = this.g.r16(this.used + 2);
    const out: [number, number][] = [];
    while (this.usedSeen !== idx) {
      const at = this.used + 4 + 8 * (this.usedSeen % this.num);
      out.push([this.g.r32(at), this.g.r32(at + 4)]);
      this.usedSeen = (this.usedSeen + 1) & 0xffff;
    }
    return out;
  }

  setUsedEvent(v: number): void { this.g.w16(this.avail + 4 + 2 * this.num, v); }
  setNoInterrupt(on: boolean): void { this.g.w16(this.avail, on ? VRING_AVAIL_F_NO_INTERRUPT : 0); }
  availEvent(): number { return this.g.r16(this.used + 4 + 8 * this.num); }
  /** Overwrites the avail idx (hostile drivers). */
  setAvailIdx(v: number): void { this.availIdx = v & 0xffff; this.g.w16(this.avail + 2, this.availIdx); }
}
