/**
 * The guest's RAM as the VMM shares it (SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG): a short list of
 * regions, each a guest-physical range backed by a view of an mmap'd fd. Pure bookkeeping, no
 * syscalls: the caller maps and unmaps, this module only translates addresses.
 *
 * Every number comes from the VMM or the guest and is untrusted: ranges are checked with bigint
 * arithmetic (no wrap past 2^64), overlapping regions are refused, and a region whose ArrayBuffer
 * has been detached (unmapped: byteLength 0) translates like a hole. Nothing here throws for bad
 * input; refusals are `{ error }` results.
 *
 * The per-request hot path is translate() with a number address (descriptor addresses are read as
 * numbers: guest-physical addresses are at most 52 bits on x86-64 and arm64, below 2^53). Regions
 * are kept sorted by gpa and the last region hit is tried first, which is the only lookup a
 * one-region guest (or a request landing where the previous one did) ever pays.
 */

/** One region. `bytes` views the mapping starting at `mmapOffset`; at least `size` bytes long when added. */
export interface MemoryRegion {
  readonly gpa: bigint;
  readonly size: bigint;
  /** The VMM's (QEMU's) virtual address of the region, used by SET_VRING_ADDR. */
  readonly uva: bigint;
  readonly mmapOffset: bigint;
  readonly bytes: Uint8Array;
}

export interface MemoryError { readonly error: string }

/**
 * The most regions this table holds: the VMM's memory slots (GET_MAX_MEM_SLOTS: 32), each mapped
 * in pieces of at most 4 GiB (a Node 20 ArrayBuffer's limit), so a guest of a few hundred GiB fits.
 */
export const MAX_MEM_REGIONS = 512;

const U64_LIMIT = 1n << 64n;
const SAFE_LIMIT = 2 ** 53;

interface Slot {
  readonly region: MemoryRegion;
  /**
   * The part of the region below 2^53 as numbers, for number lookups (which only ask about ranges
   * ending at or below 2^53); -1 / -1 when the region starts above 2^53 (bigint lookups only).
   */
  readonly start: number;
  readonly end: number;
}

function toSlot(region: MemoryRegion): Slot {
  if (region.gpa >= BigInt(SAFE_LIMIT)) return { region, start: -1, end: -1 };
  const end = region.gpa + region.size;
  return { region, start: Number(region.gpa), end: end < BigInt(SAFE_LIMIT) ? Number(end) : SAFE_LIMIT };
}

const overlaps = (a: bigint, aLen: bigint, b: bigint, bLen: bigint): boolean => a < b + bLen && b < a + aLen;

/** Why `region` cannot join `others` (null when it can). */
function refusal(region: MemoryRegion, others: readonly MemoryRegion[]): string | null {
  const { gpa, size, uva, mmapOffset, bytes } = region;
  if (typeof gpa !== 'bigint' || typeof size !== 'bigint' || typeof uva !== 'bigint' || typeof mmapOffset !== 'bigint'
    || !(bytes instanceof Uint8Array)) return 'malformed region';
  if (size <= 0n) return 'memory region of size 0';
  if (gpa < 0n || uva < 0n || mmapOffset < 0n) return 'negative address in memory region';
  if (gpa + size > U64_LIMIT) return 'memory region wraps past 2^64 (guest address)';
  if (uva + size > U64_LIMIT) return 'memory region wraps past 2^64 (VMM address)';
  if (mmapOffset + size > U64_LIMIT) return 'memory region wraps past 2^64 (mmap offset)';
  if (BigInt(bytes.byteLength) < size) return 'memory region mapping is shorter than its size';
  for (const o of others) {
    if (overlaps(gpa, size, o.gpa, o.size)) return 'memory region overlaps another (guest address)';
    if (overlaps(uva, size, o.uva, o.size)) return 'memory region overlaps another (VMM address)';
  }
  return null;
}

export class GuestMemory {
  private slots: Slot[] = [];
  private last: Slot | null = null;

  /** The regions, sorted by gpa. */
  get regions(): readonly MemoryRegion[] { return this.slots.map((s) => s.region); }

  /** ADD_MEM_REG. */
  add(region: MemoryRegion): MemoryError | null {
    if (this.slots.length >= MAX_MEM_REGIONS) return { error: `more than ${MAX_MEM_REGIONS} memory regions` };
    const why = refusal(region, this.regions);
    if (why !== null) return { error: why };
    this.install([...this.regions, region]);
    return null;
  }

  /** REM_MEM_REG: removes the region with exactly this gpa, size and uva; returns it so the caller unmaps it. */
  remove(gpa: bigint, size: bigint, uva: bigint): MemoryRegion | MemoryError {
    const i = this.slots.findIndex((s) => s.region.gpa === gpa && s.region.size === size && s.region.uva === uva);
    if (i < 0) return { error: 'no such memory region' };
    const [gone] = this.slots.splice(i, 1);
    this.last = null;
    return gone!.region;
  }

  /** SET_MEM_TABLE: all or nothing. On success returns the previous regions (for the caller to unmap). */
  replaceAll(regions: readonly MemoryRegion[]): { removed: MemoryRegion[] } | MemoryError {
    if (regions.length > MAX_MEM_REGIONS) return { error: `more than ${MAX_MEM_REGIONS} memory regions` };
    for (let i = 0; i < regions.length; i++) {
      const why = refusal(regions[i]!, regions.slice(0, i));
      if (why !== null) return { error: `region ${i}: ${why}` };
    }
    const removed = [...this.regions];
    this.install(regions);
    return { removed };
  }

  /** Forgets every region (RESET_OWNER, disconnect); returns them for the caller to unmap. */
  clear(): MemoryRegion[] {
    const removed = [...this.regions];
    this.install([]);
    return removed;
  }

  /**
   * Views covering exactly [gpa, gpa + len), in order; several when the range spans adjacent
   * regions. null when any byte is outside every region, in a detached region, or the arguments are
   * not non-negative integers. len 0 gives [].
   */
  translate(gpa: number | bigint, len: number): Uint8Array[] | null {
    if (!Number.isSafeInteger(len) || len < 0) return null;
    if (typeof gpa === 'number') {
      if (!Number.isSafeInteger(gpa) || gpa < 0) return null;
      if (len === 0) return [];
      if (gpa + len <= SAFE_LIMIT) return this.translateNumber(gpa, len);
      return this.translateBig(BigInt(gpa), len);
    }
    if (typeof gpa !== 'bigint' || gpa < 0n) return null;
    if (len === 0) return [];
    if (gpa + BigInt(len) <= BigInt(SAFE_LIMIT)) return this.translateNumber(Number(gpa), len);
    return this.translateBig(gpa, len);
  }

  /** One contiguous view of [gpa, gpa + len) when it lies inside a single live region, else null. */
  translateOne(gpa: number, len: number): Uint8Array | null {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(len) || len <= 0) return null;
    const s = this.find(gpa);
    if (s === null || gpa + len > s.end) return null;
    return view(s.region.bytes, gpa - s.start, len);
  }

  /** The gpa of the VMM virtual range [uva, uva + len) when it lies inside one region (SET_VRING_ADDR), else null. */
  uvaToGpa(uva: bigint, len: number | bigint): bigint | null {
    if (typeof uva !== 'bigint' || uva < 0n) return null;
    const n = typeof len === 'bigint' ? len : Number.isSafeInteger(len) && len >= 0 ? BigInt(len) : -1n;
    if (n < 0n) return null;
    for (const { region } of this.slots) {
      if (uva >= region.uva && uva + n <= region.uva + region.size) return region.gpa + (uva - region.uva);
    }
    return null;
  }

  private install(regions: readonly MemoryRegion[]): void {
    this.slots = regions.map(toSlot).sort((a, b) => (a.region.gpa < b.region.gpa ? -1 : 1));
    this.last = this.slots[0] ?? null;
  }

  /** The slot holding guest address `gpa` (a number below 2^53), or null. */
  private find(gpa: number): Slot | null {
    const last = this.last;
    if (last !== null && gpa >= last.start && gpa < last.end) return last;
    const slots = this.slots;
    let lo = 0;
    let hi = slots.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = slots[mid]!;
      if (s.end !== -1 && gpa >= s.end) lo = mid + 1;
      else if (s.start === -1 || gpa < s.start) hi = mid - 1;
      else return (this.last = s);
    }
    return null;
  }

  private translateNumber(gpa: number, len: number): Uint8Array[] | null {
    const out: Uint8Array[] = [];
    let at = gpa;
    let left = len;
    while (left > 0) {
      const s = this.find(at);
      if (s === null) return null;
      const n = Math.min(left, s.end - at);
      const v = view(s.region.bytes, at - s.start, n);
      if (v === null) return null;
      out.push(v);
      at += n;
      left -= n;
    }
    return out;
  }

  private translateBig(gpa: bigint, len: number): Uint8Array[] | null {
    const out: Uint8Array[] = [];
    let at = gpa;
    let left = BigInt(len);
    while (left > 0n) {
      const r = this.slots.find((s) => at >= s.region.gpa && at < s.region.gpa + s.region.size)?.region;
      if (r === undefined) return null;
      const room = r.gpa + r.size - at;
      const n = left < room ? left : room;
      const v = view(r.bytes, Number(at - r.gpa), Number(n));
      if (v === null) return null;
      out.push(v);
      at += n;
      left -= n;
    }
    return out;
  }
}

/** bytes[off, off + len) or null when the mapping is detached or shorter (never throws). */
function view(bytes: Uint8Array, off: number, len: number): Uint8Array | null {
  if (off + len > bytes.byteLength) return null;
  return bytes.subarray(off, off + len);
}
