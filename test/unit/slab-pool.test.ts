import { describe, expect, it } from 'vitest';
import { SlabPool } from '../../src/fuse/slab-pool.js';

describe('SlabPool', () => {
  it('reuses given-back slabs, never hands one out twice, ignores foreign buffers and double gives, keeps at most `keep`', () => {
    const p = new SlabPool(4096, 2);
    const a = p.take();
    const b = p.take();
    expect(a.length).toBe(4096);
    expect(a.buffer).not.toBe(b.buffer);
    expect(p.inUse).toBe(2);
    p.give(a.subarray(100, 200)); // a view gives back its slab
    p.give(a);                     // already back: ignored
    p.give(Buffer.alloc(4096));    // not ours: ignored
    expect(p.inUse).toBe(1);
    const c = p.take();
    expect(c.buffer).toBe(a.buffer);
    const d = p.take();
    expect(d.buffer).not.toBe(a.buffer);
    expect(d.buffer).not.toBe(b.buffer);
    for (const x of [b, c, d]) p.give(x);
    expect(p.inUse).toBe(0);
    // only two were kept: three takes give two old slabs and one new
    const again = [p.take(), p.take(), p.take()].map((x) => x.buffer);
    expect(new Set(again).size).toBe(3);
    expect(again.filter((x) => x === b.buffer || x === c.buffer || x === d.buffer).length).toBe(2);
  });

  it('a new slab is resident when handed out: the kernel never faults a page in while it copies a request into it', () => {
    // (a fault while the reader has a fatal signal pending fails the copy, and the kernel answers
    // the request EIO: see slab-pool.ts)
    // large against whatever a collection during take() may give back meanwhile
    const MIB = 1 << 20;
    const p = new SlabPool(256 * MIB, 1);
    const before = process.memoryUsage.rss();
    const s = p.take();
    const grew = process.memoryUsage.rss() - before;
    expect(s.length).toBe(256 * MIB);
    expect(grew).toBeGreaterThan(200 * MIB);
  });
});
