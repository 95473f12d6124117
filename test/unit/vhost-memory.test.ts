/**
 * GuestMemory: region bookkeeping (ADD_MEM_REG / REM_MEM_REG / SET_MEM_TABLE) refuses every
 * inconsistent region, and translate()/uvaToGpa() return exactly the asked range or null, never a
 * view past a region (checked against guard bytes and the view's place in its mapping).
 */
import { describe, expect, it } from 'vitest';
import { GuestMemory, MAX_MEM_REGIONS, type MemoryRegion } from '../../src/frontends/vhost-user/guest-memory.js';
import { ADJACENT_LAYOUT, FakeGuest, GUARD } from '../helpers/vhost-fake-driver.js';

const readAllBytes = (vs: Uint8Array[]) => vs.flatMap((v) => [...v]);
const region = (gpa: bigint, size: number, uva: bigint, bytes = new Uint8Array(size)): MemoryRegion =>
  ({ gpa, size: BigInt(size), uva, mmapOffset: 0n, bytes });

describe('GuestMemory: adding and removing regions', () => {
  it('keeps regions sorted by gpa whatever the order they come in', () => {
    const m = new GuestMemory();
    expect(m.add(region(0x10000n, 16, 0x5000n))).toBeNull();
    expect(m.add(region(0n, 16, 0x9000n))).toBeNull();
    expect(m.add(region(0x100n, 16, 0x1000n))).toBeNull();
    expect(m.regions.map((r) => r.gpa)).toEqual([0n, 0x100n, 0x10000n]);
  });
  for (const [what, r, error] of [
    ['size 0', region(0x100n, 0, 0x8000n), 'memory region of size 0'],
    ['gpa overlap', region(0x0fn, 2, 0x8000n), 'memory region overlaps another (guest address)'],
    ['gpa containing another', region(0n, 0x100, 0x8000n), 'memory region overlaps another (guest address)'],
    ['uva overlap', region(0x100n, 16, 0x100fn), 'memory region overlaps another (VMM address)'],
    ['gpa wrap past 2^64', region(0xffff_ffff_ffff_fff0n, 32, 0x8000n), 'memory region wraps past 2^64 (guest address)'],
    ['uva wrap past 2^64', region(0x100n, 32, 0xffff_ffff_ffff_fff0n), 'memory region wraps past 2^64 (VMM address)'],
    ['negative gpa', region(-16n, 16, 0x8000n), 'negative address in memory region'],
    ['bytes shorter than size', { ...region(0x100n, 16, 0x8000n), bytes: new Uint8Array(15) }, 'memory region mapping is shorter than its size'],
    ['detached bytes', (() => { const b = new ArrayBuffer(16); const v = new Uint8Array(b); structuredClone(b, { transfer: [b] }); return region(0x100n, 16, 0x8000n, v); })(),
      'memory region mapping is shorter than its size'],
    ['mmap offset wrap', { ...region(0x100n, 16, 0x8000n), mmapOffset: 0xffff_ffff_ffff_fff8n }, 'memory region wraps past 2^64 (mmap offset)'],
    ['not a region', { gpa: 1, size: 2n, uva: 0n, mmapOffset: 0n, bytes: new Uint8Array(2) } as unknown as MemoryRegion, 'malformed region'],
  ] as const) {
    it(`refuses ${what}`, () => {
      const m = new GuestMemory();
      expect(m.add(region(0x10n, 16, 0x1000n))).toBeNull();
      expect(m.add(r)).toEqual({ error });
      expect(m.regions).toHaveLength(1);
    });
  }
  it(`refuses region ${MAX_MEM_REGIONS + 1}`, () => {
    const m = new GuestMemory();
    for (let i = 0; i < MAX_MEM_REGIONS; i++) expect(m.add(region(BigInt(i) * 0x100n, 16, BigInt(i) * 0x100n))).toBeNull();
    expect(m.add(region(0x100000n, 16, 0x100000n))).toEqual({ error: `more than ${MAX_MEM_REGIONS} memory regions` });
  });
  it('adjacent regions (end == start) are not overlaps', () => {
    const m = new GuestMemory();
    expect(m.add(region(0n, 16, 0n))).toBeNull();
    expect(m.add(region(16n, 16, 16n))).toBeNull();
  });
  it('removes by gpa, size and uva, returning the region for unmapping', () => {
    const m = new GuestMemory();
    const a = region(0n, 16, 0x1000n);
    m.add(a);
    m.add(region(0x100n, 16, 0x2000n));
    expect(m.remove(0n, 16n, 0x2000n)).toEqual({ error: 'no such memory region' });
    expect(m.remove(0n, 8n, 0x1000n)).toEqual({ error: 'no such memory region' });
    expect(m.remove(0n, 16n, 0x1000n)).toBe(a);
    expect(m.translate(0, 1)).toBeNull();
    expect(m.translate(0x100, 1)).not.toBeNull();
    expect(m.remove(0n, 16n, 0x1000n)).toEqual({ error: 'no such memory region' });
  });
  it('replaceAll is all or nothing and hands back the old regions', () => {
    const m = new GuestMemory();
    const old = region(0n, 16, 0x1000n);
    m.add(old);
    expect(m.replaceAll([region(0x100n, 16, 0n), region(0x108n, 16, 0x100n)])).toEqual({ error: 'region 1: memory region overlaps another (guest address)' });
    expect(m.regions).toEqual([old]);
    expect(m.replaceAll(Array.from({ length: MAX_MEM_REGIONS + 1 }, (_, i) => region(BigInt(i) * 32n, 16, BigInt(i) * 32n)))).toEqual({ error: `more than ${MAX_MEM_REGIONS} memory regions` });
    const next = [region(0x100n, 16, 0n)];
    expect(m.replaceAll(next)).toEqual({ removed: [old] });
    expect(m.regions).toEqual(next);
    expect(m.clear()).toEqual(next);
    expect(m.regions).toEqual([]);
    expect(m.translate(0x100, 1)).toBeNull();
  });
});

describe('GuestMemory: translation', () => {
  it('translates a range inside one region to one view of exactly that range', () => {
    const g = new FakeGuest();
    const vs = g.mem.translate(0xc010, 32)!;
    expect(vs).toHaveLength(1);
    expect(vs[0]!.buffer).toBe(g.regions[1]!.buf);
    expect(vs[0]!.byteOffset).toBe(GUARD + 0x10);
    expect(vs[0]!.byteLength).toBe(32);
    expect(g.mem.translate(0xc010n, 32)![0]!.byteOffset).toBe(GUARD + 0x10);
  });
  it('spans adjacent regions with one view each, in order', () => {
    const g = new FakeGuest(ADJACENT_LAYOUT);
    const vs = g.mem.translate(0x40000 - 5, 10)!;
    expect(vs.map((v) => [v.buffer === g.regions[1]!.buf, v.byteOffset, v.byteLength])).toEqual([[true, GUARD + 0x34000 - 5, 5], [false, GUARD, 5]]);
    expect(g.mem.translateOne(0x40000 - 5, 10)).toBeNull();
    expect(g.mem.translateOne(0x40000 - 5, 5)!.byteLength).toBe(5);
  });
  it('returns [] for length 0 and null for anything touching a hole or the end', () => {
    const g = new FakeGuest();
    expect(g.mem.translate(0xa000, 0)).toEqual([]);
    expect(g.mem.translate(0xa000, 1)).toBeNull();
    expect(g.mem.translate(0xa000 - 1, 2)).toBeNull();
    expect(g.mem.translate(0xa000 - 1, 1)).not.toBeNull();
    expect(g.mem.translate(0xc000 - 1, 2)).toBeNull();
    expect(g.mem.translate(0x40000 - 1, 1)).not.toBeNull();
    expect(g.mem.translate(0x40000 - 1, 2)).toBeNull();
    expect(g.mem.translate(0x40000, 1)).toBeNull();
    expect(g.mem.translate(2 ** 53 - 1, 1)).toBeNull();
    expect(g.mem.translate(0xffff_ffff_ffff_ffffn, 1)).toBeNull();
    expect(g.mem.translate(0xffff_ffff_ffff_ffffn, 2)).toBeNull();
  });
  it('returns null for nonsense arguments instead of throwing', () => {
    const g = new FakeGuest();
    expect(g.mem.translate(-1, 1)).toBeNull();
    expect(g.mem.translate(-1n, 1)).toBeNull();
    expect(g.mem.translate(0.5, 1)).toBeNull();
    expect(g.mem.translate(0, -1)).toBeNull();
    expect(g.mem.translate(0, 1.5)).toBeNull();
    expect(g.mem.translate(0, Number.NaN)).toBeNull();
    expect(g.mem.translate(Number.POSITIVE_INFINITY, 1)).toBeNull();
    expect(g.mem.translate(0, 2 ** 60)).toBeNull();
    expect(g.mem.translateOne(0, 0)).toBeNull();
    expect(g.mem.translateOne(-4, 4)).toBeNull();
  });
  it('treats a detached (unmapped) region as absent', () => {
    const g = new FakeGuest();
    const before = g.mem.translate(0x100, 16)!;
    g.detach(0);
    expect(before[0]!.byteLength).toBe(0);
    expect(g.mem.translate(0x100, 16)).toBeNull();
    expect(g.mem.translateOne(0x100, 16)).toBeNull();
    expect(g.mem.translate(0xc000, 16)).not.toBeNull();
  });
  it('translates regions above 2^53 through bigints only', () => {
    const m = new GuestMemory();
    const high = 0x0030_0000_0000_0000n;
    const bytes = new Uint8Array(64);
    bytes[5] = 42;
    expect(m.add(region(high, 64, 0x1000n, bytes))).toBeNull();
    expect(m.add(region(0n, 16, 0x2000n))).toBeNull();
    expect(m.translate(high + 5n, 1)![0]![0]).toBe(42);
    expect(m.translate(high + 60n, 8)).toBeNull();
    expect(m.translate(0, 16)).toHaveLength(1);
    expect(m.translate(2 ** 52, 1)).toBeNull();
  });
  it('translates a region straddling 2^53 with numbers below and bigints across', () => {
    const m = new GuestMemory();
    const bytes = new Uint8Array(64).map((_, i) => i);
    expect(m.add(region(BigInt(2 ** 53) - 32n, 64, 0n, bytes))).toBeNull();
    expect(m.translate(2 ** 53 - 8, 8)![0]![0]).toBe(24);
    expect(m.translateOne(2 ** 53 - 8, 8)![7]).toBe(31);
    expect(readAllBytes(m.translate(BigInt(2 ** 53) - 4n, 8)!)).toEqual([28, 29, 30, 31, 32, 33, 34, 35]);
    expect(m.translate(BigInt(2 ** 53) + 30n, 4)).toBeNull();
  });
  it('maps VMM virtual addresses to guest-physical ones (SET_VRING_ADDR)', () => {
    const g = new FakeGuest();
    const hi = g.regions[1]!;
    expect(g.mem.uvaToGpa(hi.uva + 0x40n, 0x100)).toBe(0xc040n);
    expect(g.mem.uvaToGpa(hi.uva + BigInt(hi.size) - 8n, 8)).toBe(BigInt(hi.gpa + hi.size - 8));
    expect(g.mem.uvaToGpa(hi.uva + BigInt(hi.size) - 8n, 9)).toBeNull();
    expect(g.mem.uvaToGpa(hi.uva - 1n, 1)).toBeNull();
    expect(g.mem.uvaToGpa(-1n, 1)).toBeNull();
    expect(g.mem.uvaToGpa(g.regions[0]!.uva, -1)).toBeNull();
    expect(g.mem.uvaToGpa(g.regions[0]!.uva, 0n)).toBe(0n);
  });
});
