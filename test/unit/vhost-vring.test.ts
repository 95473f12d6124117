/**
 * The split virtqueue against a fake guest driver: well-formed traffic (direct, indirect, mixed,
 * spanning regions, 16-bit wrap, notification suppression with and without EVENT_IDX) and one test
 * per hostile chain shape, each asserting the exact `broken` reason and that no byte outside the
 * regions' views was written (guard bytes) and no returned view strays outside a region.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ChainWriter, needEvent, readAll, segments, sliceViews, SplitQueue, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE, type Chain, type Broken,
} from '../../src/frontends/vhost-user/vring.js';
import { ADJACENT_LAYOUT, FakeDriver, FakeGuest, type QueueOpts } from '../helpers/vhost-fake-driver.js';

let guest: FakeGuest | null = null;
function setup(opts: QueueOpts = {}, layout?: { gpa: number; size: number }[]): { g: FakeGuest; d: FakeDriver; q: SplitQueue } {
  const g = new FakeGuest(layout);
  guest = g;
  const d = new FakeDriver(g, opts);
  return { g, d, q: d.queue() };
}
afterEach(() => {
  expect(guest?.guardsIntact() ?? true).toBe(true);
  guest = null;
});

function asChain(r: Chain | Broken | null): Chain {
  if (r === null || 'broken' in r) throw new Error(`expected a chain, got ${JSON.stringify(r)}`);
  for (const v of [...r.readable, ...r.writable]) expect(guest!.inRegion(v)).toBe(true);
  return r;
}
const text = (views: Uint8Array[]) => readAll(views)!.toString();

describe('split queue: well-formed chains', () => {
  it('pops a direct chain, writes the reply, pushes it to the used ring', () => {
    const { g, d, q } = setup();
    expect(q.pop()).toBeNull();
    const req = d.alloc(5);
    g.write(req, Buffer.from('hello'));
    const reply = d.alloc(8, 0xee);
    const head = d.chain([{ gpa: req, len: 5 }, { gpa: reply, len: 8, write: true }]);
    d.post(head);
    const c = asChain(q.pop());
    expect(c).toMatchObject({ head, readableBytes: 5, writableBytes: 8 });
    expect(text(c.readable)).toBe('hello');
    const w = new ChainWriter(c.writable);
    expect(w.write(Buffer.from('world'))).toBe(5);
    expect(q.pushUsed(c.head, w.written)).toBeNull();
    expect(d.takeUsed()).toEqual([[head, 5]]);
    expect(g.read(reply, 8)).toEqual(Buffer.from([...Buffer.from('world'), 0xee, 0xee, 0xee]));
    expect(q.pop()).toBeNull();
    expect(q.lastAvailIdx).toBe(1);
    expect(q.lastUsedIdx).toBe(1);
  });

  it('pops several chains in order and keeps going after the ring empties', () => {
    const { g, d, q } = setup({ num: 4 });
    for (let round = 0; round < 5; round++) {
      const heads = [0, 1, 2].map((k) => {
        const b = d.alloc(4);
        g.write(b, Buffer.from(`r${round}c${k}`));
        return d.chain([{ gpa: b, len: 4 }]);
      });
      d.post(...heads);
      for (const [k, h] of heads.entries()) {
        const c = asChain(q.pop());
        expect(c.head).toBe(h);
        expect(text(c.readable)).toBe(`r${round}c${k}`);
        expect(q.pushUsed(c.head, 0)).toBeNull();
      }
      expect(q.pop()).toBeNull();
      expect(d.takeUsed().map(([id]) => id)).toEqual(heads);
    }
  });

  it('gives two views for a buffer spanning adjacent regions', () => {
    const { g, d, q } = setup({}, ADJACENT_LAYOUT);
    const at = 0x40000 - 3;
    g.write(at, Buffer.from('ab'.padEnd(3, 'c')));
    g.write(0x40000, Buffer.from('def'));
    d.post(d.chain([{ gpa: at, len: 6 }]));
    const c = asChain(q.pop());
    expect(c.readable.map((v) => v.byteLength)).toEqual([3, 3]);
    expect(text(c.readable)).toBe('abcdef');
    expect(c.readable[0]!.buffer).not.toBe(c.readable[1]!.buffer);
  });

  it('pops an indirect chain', () => {
    const { g, d, q } = setup({ indirect: true });
    const a = d.alloc(3); g.write(a, Buffer.from('abc'));
    const b = d.alloc(2); g.write(b, Buffer.from('de'));
    const w = d.alloc(16);
    const head = d.indirectChain([{ gpa: a, len: 3 }, { gpa: b, len: 2 }, { gpa: w, len: 16, write: true }]);
    d.post(head);
    const c = asChain(q.pop());
    expect(c).toMatchObject({ head, readableBytes: 5, writableBytes: 16 });
    expect(text(c.readable)).toBe('abcde');
    expect(c.writable).toHaveLength(1);
  });

  it('pops a mixed chain (direct descriptors, then an indirect table) and alternates direct and indirect chains', () => {
    const { g, d, q } = setup({ indirect: true });
    const a = d.alloc(2); g.write(a, Buffer.from('xy'));
    const b = d.alloc(2); g.write(b, Buffer.from('zw'));
    const w = d.alloc(4);
    const mixed = d.indirectChain([{ gpa: b, len: 2 }, { gpa: w, len: 4, write: true }], [{ gpa: a, len: 2 }]);
    const direct = d.chain([{ gpa: a, len: 2 }, { gpa: w, len: 4, write: true }]);
    const ind = d.indirectChain([{ gpa: b, len: 2 }]);
    d.post(mixed, direct, ind);
    expect(text(asChain(q.pop()).readable)).toBe('xyzw');
    expect(asChain(q.pop())).toMatchObject({ head: direct, readableBytes: 2, writableBytes: 4 });
    expect(asChain(q.pop())).toMatchObject({ head: ind, readableBytes: 2, writableBytes: 0 });
  });

  it('copies an indirect table that spans two adjacent regions', () => {
    const { g, d, q } = setup({ indirect: true }, ADJACENT_LAYOUT);
    const a = d.alloc(1); g.write(a, Buffer.from('q'));
    const table = 0x40000 - 16;
    d.setDesc(0, a, 1, VRING_DESC_F_NEXT, 1, table);
    d.setDesc(1, a, 1, 0, 0, table);
    d.setDesc(0, table, 32, VRING_DESC_F_INDIRECT, 0);
    d.post(0);
    expect(text(asChain(q.pop()).readable)).toBe('qq');
  });

  it('follows the avail and used indices across the 16-bit wrap', () => {
    const { g, d, q } = setup({ num: 4, base: 0xfffe });
    expect(q.lastAvailIdx).toBe(0xfffe);
    expect(q.lastUsedIdx).toBe(0xfffe);
    const heads: number[] = [];
    for (let k = 0; k < 4; k++) {
      const b = d.alloc(1); g.write(b, Buffer.from([k]));
      heads.push(d.chain([{ gpa: b, len: 1 }]));
    }
    d.post(...heads);
    expect(d.availIdx).toBe(2);
    for (let k = 0; k < 4; k++) {
      const c = asChain(q.pop());
      expect(readAll(c.readable)![0]).toBe(k);
      q.pushUsed(c.head, k);
    }
    expect(q.pop()).toBeNull();
    expect(q.lastAvailIdx).toBe(2);
    expect(q.lastUsedIdx).toBe(2);
    expect(g.r16(d.used + 2)).toBe(2);
    expect(d.takeUsed()).toEqual(heads.map((h, k) => [h, k]));
  });

  it('without EVENT_IDX notifies unless the driver set VRING_AVAIL_F_NO_INTERRUPT', () => {
    const { d, q } = setup();
    d.post(d.chain([{ gpa: d.alloc(1), len: 1 }]));
    q.pushUsed(asChain(q.pop()).head, 0);
    expect(q.shouldNotify()).toBe(true);
    d.setNoInterrupt(true);
    expect(q.shouldNotify()).toBe(false);
    d.setNoInterrupt(false);
    expect(q.shouldNotify()).toBe(true);
    q.updateAvailEvent();
    expect(d.availEvent()).toBe(0); // nothing written without EVENT_IDX
  });

  it('with EVENT_IDX notifies when the used idx passes used_event (vring_need_event)', () => {
    const { d, q } = setup({ eventIdx: true, num: 8 });
    const one = () => {
      d.post(d.chain([{ gpa: d.alloc(1), len: 1 }]));
      q.pushUsed(asChain(q.pop()).head, 0);
    };
    one();
    expect(q.shouldNotify()).toBe(true); // the first call always notifies
    d.setNoInterrupt(true); // ignored under EVENT_IDX
    d.setUsedEvent(2); // "interrupt me when used idx moves past 2"
    one(); // used idx 2: not past 2 yet
    expect(q.shouldNotify()).toBe(false);
    one(); // used idx 3 > 2
    expect(q.shouldNotify()).toBe(true);
    expect(q.shouldNotify()).toBe(false); // nothing new since
    d.setUsedEvent(3);
    one(); one(); one(); // 4, 5, 6: passed 3 at the first of them
    expect(q.shouldNotify()).toBe(true);
    d.setUsedEvent(100);
    one();
    expect(q.shouldNotify()).toBe(false);
  });

  it('vring_need_event matches the spec formula, including across the wrap', () => {
    expect(needEvent(0, 1, 0)).toBe(true);
    expect(needEvent(1, 1, 0)).toBe(false);
    expect(needEvent(0xffff, 0, 0xfffe)).toBe(true);
    expect(needEvent(0xffff, 0xffff, 0xfffe)).toBe(false);
    expect(needEvent(5, 10, 10)).toBe(false);
    expect(needEvent(3, 10, 2)).toBe(true);
    expect(needEvent(3, 3, 2)).toBe(false);
  });

  it('with EVENT_IDX writes avail_event = the next avail index to process', () => {
    const { d, q } = setup({ eventIdx: true, base: 0xffff });
    q.updateAvailEvent();
    expect(d.availEvent()).toBe(0xffff);
    d.post(d.chain([{ gpa: d.alloc(1), len: 1 }]), d.chain([{ gpa: d.alloc(1), len: 1 }]));
    asChain(q.pop()); asChain(q.pop());
    expect(q.pop()).toBeNull();
    q.updateAvailEvent();
    expect(d.availEvent()).toBe(1);
  });

  it('reads used idx from the ring when rebuilt (a queue re-created after a memory table change)', () => {
    const { g, d, q } = setup();
    d.post(d.chain([{ gpa: d.alloc(1), len: 1 }]));
    q.pushUsed(asChain(q.pop()).head, 7);
    const again = SplitQueue.create(g.mem, {
      num: d.num, desc: BigInt(d.desc), avail: BigInt(d.avail), used: BigInt(d.used), eventIdx: false, indirect: false,
      lastAvail: q.lastAvailIdx,
    }) as SplitQueue;
    expect(again.lastUsedIdx).toBe(1);
    expect(again.pop()).toBeNull();
  });
});

describe('split queue: zero-length descriptors are skipped', () => {
  it('adds no view for them and ignores their address', () => {
    const { g, d, q } = setup();
    const a = d.alloc(2); g.write(a, Buffer.from('ok'));
    const w = d.alloc(4);
    d.post(d.chain([{ gpa: a, len: 2 }, { gpa: 0xa000 /* in the hole */, len: 0 }, { gpa: w, len: 4, write: true }, { gpa: 2 ** 52, len: 0, write: true }]));
    const c = asChain(q.pop());
    expect(c).toMatchObject({ readableBytes: 2, writableBytes: 4 });
    expect(c.readable).toHaveLength(1);
    expect(c.writable).toHaveLength(1);
  });
  it('still counts a zero-length writable one for the readable-after-writable rule', () => {
    const { d, q } = setup();
    d.post(d.chain([{ gpa: d.alloc(1), len: 0, write: true }, { gpa: d.alloc(1), len: 1 }]));
    expect(q.pop()).toEqual({ broken: 'device-readable descriptor after a device-writable one' });
  });
});

/** Writes `entries` ([addr, len, flags, next]) as an indirect table and posts ring descriptor 0 pointing at it. */
function postRawIndirect(d: FakeDriver, entries: [number, number, number, number][], headFlags = 0, headNext = 0): void {
  const t = d.alloc(16 * entries.length);
  entries.forEach(([addr, len, flags, next], i) => d.setDesc(i, addr, len, flags, next, t));
  d.setDesc(0, t, 16 * entries.length, VRING_DESC_F_INDIRECT | headFlags, headNext);
  d.post(0);
}

describe('split queue: hostile rings (each breaks the queue with its reason)', () => {
  const brokenWith = (q: SplitQueue, reason: string) => {
    expect(q.pop()).toEqual({ broken: reason });
    expect(q.broken).toBe(reason);
    expect(q.pop()).toEqual({ broken: reason }); // sticky
    expect(q.pushUsed(0, 0)).toEqual({ broken: reason });
  };

  it('avail idx jumping by more than the queue size', () => {
    const { d, q } = setup({ num: 8 });
    d.setAvailIdx(9);
    brokenWith(q, 'avail index moved by 9, more than the queue size 8');
    expect(q.lastAvailIdx).toBe(0);
  });
  it('avail idx going backwards (a jump of nearly 2^16)', () => {
    const { d, q } = setup({ num: 8, base: 5 });
    d.setAvailIdx(4);
    brokenWith(q, 'avail index moved by 65535, more than the queue size 8');
  });
  it('head index >= num', () => {
    const { d, q } = setup({ num: 8 });
    d.post(8);
    brokenWith(q, 'head index 8 is out of range (queue size 8)');
  });
  it('next index >= num', () => {
    const { d, q } = setup({ num: 8 });
    d.setDesc(0, d.alloc(1), 1, VRING_DESC_F_NEXT, 8);
    d.post(0);
    brokenWith(q, 'next index 8 is out of range (table of 8)');
  });
  it('a descriptor that loops to itself', () => {
    const { d, q } = setup({ num: 8 });
    d.setDesc(3, d.alloc(1), 1, VRING_DESC_F_NEXT, 3);
    d.post(3);
    brokenWith(q, 'descriptor chain loops');
  });
  it('a loop through the whole table', () => {
    const { d, q } = setup({ num: 8 });
    const b = d.alloc(1);
    for (let i = 0; i < 8; i++) d.setDesc(i, b, 1, VRING_DESC_F_NEXT, (i + 1) % 8);
    d.post(5);
    brokenWith(q, 'descriptor chain loops');
  });
  it('a loop inside an indirect table (bounded by the table length, not the queue size)', () => {
    const { d, q } = setup({ num: 8, indirect: true });
    postRawIndirect(d, [[d.alloc(1), 1, VRING_DESC_F_NEXT, 1], [d.alloc(1), 1, VRING_DESC_F_NEXT, 0]]);
    brokenWith(q, 'indirect descriptor chain loops');
  });
  it('next index beyond the indirect table', () => {
    const { d, q } = setup({ num: 8, indirect: true });
    postRawIndirect(d, [[d.alloc(1), 1, VRING_DESC_F_NEXT, 2], [0, 0, 0, 0]]);
    brokenWith(q, 'next index 2 is out of range (table of 2)');
  });
  it('indirect table length not a multiple of 16', () => {
    const { d, q } = setup({ indirect: true });
    d.setDesc(0, d.alloc(32), 24, VRING_DESC_F_INDIRECT, 0);
    d.post(0);
    brokenWith(q, 'indirect table length 24 is not a positive multiple of 16');
  });
  it('indirect table of length 0', () => {
    const { d, q } = setup({ indirect: true });
    d.setDesc(0, d.alloc(32), 0, VRING_DESC_F_INDIRECT, 0);
    d.post(0);
    brokenWith(q, 'indirect table length 0 is not a positive multiple of 16');
  });
  it('indirect table in the hole between regions', () => {
    const { d, q } = setup({ indirect: true });
    d.setDesc(0, 0xa000, 32, VRING_DESC_F_INDIRECT, 0);
    d.post(0);
    brokenWith(q, 'indirect table is outside guest memory');
  });
  it('indirect table running off the end of guest memory', () => {
    const { g, d, q } = setup({ indirect: true });
    const end = g.regions[1]!.gpa + g.regions[1]!.size;
    d.setDesc(0, end - 16, 32, VRING_DESC_F_INDIRECT, 0);
    d.post(0);
    brokenWith(q, 'indirect table is outside guest memory');
  });
  it('nested indirect descriptor', () => {
    const { d, q } = setup({ indirect: true });
    const inner = d.alloc(16);
    d.setDesc(0, d.alloc(1), 1, 0, 0, inner);
    postRawIndirect(d, [[inner, 16, VRING_DESC_F_INDIRECT, 0]]);
    brokenWith(q, 'nested indirect descriptor');
  });
  it('INDIRECT together with NEXT', () => {
    const { d, q } = setup({ indirect: true });
    d.setDesc(1, d.alloc(1), 1, 0, 0);
    postRawIndirect(d, [[d.alloc(1), 1, 0, 0]], VRING_DESC_F_NEXT, 1);
    brokenWith(q, 'indirect descriptor with NEXT');
  });
  it('an indirect descriptor when VIRTIO_RING_F_INDIRECT_DESC was not negotiated', () => {
    const { d, q } = setup({ indirect: false });
    postRawIndirect(d, [[d.alloc(1), 1, 0, 0]]);
    brokenWith(q, 'indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC');
  });
  it('a readable descriptor after a writable one', () => {
    const { d, q } = setup();
    d.post(d.chain([{ gpa: d.alloc(1), len: 1 }, { gpa: d.alloc(1), len: 1, write: true }, { gpa: d.alloc(1), len: 1 }]));
    brokenWith(q, 'device-readable descriptor after a device-writable one');
  });
  it('a readable descriptor in the indirect table after a writable direct one', () => {
    const { d, q } = setup({ indirect: true });
    d.post(d.indirectChain([{ gpa: d.alloc(1), len: 1 }], [{ gpa: d.alloc(1), len: 1, write: true }]));
    brokenWith(q, 'device-readable descriptor after a device-writable one');
  });
  for (const [what, addr, len] of [
    ['in the hole', 0xa000, 16],
    ['straddling the end of low RAM into the hole', 0xa000 - 8, 16],
    ['past the end of guest memory', 0x40000 - 8, 16],
    ['far above guest memory (2^52)', 2 ** 52, 16],
    ['above 2^53 (bigint path)', 0x0020_0000_0000_0000n, 16],
    ['wrapping past 2^64', 0xffff_ffff_ffff_fff0n, 0x20],
  ] as const) {
    it(`a buffer ${what}`, () => {
      const { d, q } = setup();
      d.setDesc(0, d.alloc(4), 4, VRING_DESC_F_NEXT, 1);
      d.setDesc(1, addr, len, VRING_DESC_F_WRITE, 0);
      d.post(0);
      brokenWith(q, 'descriptor buffer is outside guest memory');
    });
  }
  it('a chain longer than the configured maximum', () => {
    const { d, q } = setup({ maxChainBytes: 100 });
    d.post(d.chain([{ gpa: d.alloc(60), len: 60 }, { gpa: d.alloc(41), len: 41, write: true }]));
    brokenWith(q, 'descriptor chain is longer than 100 bytes');
  });
  it('a chain of exactly the configured maximum is fine', () => {
    const { d, q } = setup({ maxChainBytes: 100 });
    d.post(d.chain([{ gpa: d.alloc(60), len: 60 }, { gpa: d.alloc(40), len: 40, write: true }]));
    expect(asChain(q.pop()).writableBytes).toBe(40);
  });
  it('a chain over 2^32 - 1 bytes by default (checked before translating the descriptor that crosses it)', () => {
    const { d, q } = setup();
    d.post(d.chain([{ gpa: d.alloc(16), len: 16 }, { gpa: 0, len: 0xfffffff0, write: true }]));
    brokenWith(q, 'descriptor chain is longer than 4294967295 bytes');
  });
  it('a data region unmapped (detached) before the chain is popped', () => {
    const { g, d, q } = setup();
    d.post(d.chain([{ gpa: 0x100, len: 4 }]));
    g.detach(0);
    brokenWith(q, 'descriptor buffer is outside guest memory');
  });
  it('the ring region unmapped: pop and pushUsed report it, shouldNotify says no, nothing throws', () => {
    const { g, d, q } = setup({ eventIdx: true });
    d.post(d.chain([{ gpa: d.alloc(1), len: 1 }, { gpa: d.alloc(4), len: 4, write: true }]));
    const c = asChain(q.pop());
    g.detach(1);
    expect(q.pushUsed(c.head, 1)).toEqual({ broken: 'ring memory is no longer mapped' });
    expect(q.shouldNotify()).toBe(false);
    expect(() => q.updateAvailEvent()).not.toThrow();
    expect(q.pop()).toEqual({ broken: 'ring memory is no longer mapped' });
    // the popped views are now empty, and the helpers cope
    expect(c.readable[0]!.byteLength).toBe(0);
    expect(readAll(c.readable)).toBeNull();
    expect(new ChainWriter(c.writable).write(Buffer.from('x'))).toBe(0);
  });
});

describe('split queue: ring placement checks', () => {
  const make = (g: FakeGuest, over: Partial<{ num: number; desc: bigint; avail: bigint; used: bigint; lastAvail: number }>) =>
    SplitQueue.create(g.mem, { num: 8, desc: 0xc000n, avail: 0xc080n, used: 0xc0a0n, eventIdx: true, indirect: true, lastAvail: 0, ...over });
  it('accepts a well-placed ring', () => {
    guest = new FakeGuest();
    expect(make(guest, {})).toBeInstanceOf(SplitQueue);
  });
  for (const [what, over, error] of [
    ['num 0', { num: 0 }, 'queue size 0 is not a power of two in 1..32768'],
    ['num 3', { num: 3 }, 'queue size 3 is not a power of two in 1..32768'],
    ['num 65536', { num: 65536 }, 'queue size 65536 is not a power of two in 1..32768'],
    ['num 1.5', { num: 1.5 }, 'queue size 1.5 is not a power of two in 1..32768'],
    ['base > 0xffff', { lastAvail: 0x10000 }, 'vring base is not a 16-bit index'],
    ['descriptor table misaligned', { desc: 0xc008n }, 'descriptor ring is not 16-byte aligned'],
    ['avail ring misaligned', { avail: 0xc081n }, 'avail ring is not 2-byte aligned'],
    ['used ring misaligned', { used: 0xc0a2n }, 'used ring is not 4-byte aligned'],
    ['descriptor table in the hole', { desc: 0xa000n }, 'descriptor ring is outside guest memory (or not within one region)'],
    ['avail ring crossing into the hole', { avail: 0xa000n - 8n }, 'avail ring is outside guest memory (or not within one region)'],
    ['used ring past the end of memory', { used: 0x40000n - 16n }, 'used ring is outside guest memory (or not within one region)'],
    ['used ring at 2^64 - 8', { used: 0xffff_ffff_ffff_fff8n }, 'used ring is outside guest memory'],
  ] as const) {
    it(`refuses ${what}`, () => {
      guest = new FakeGuest();
      expect(make(guest, over)).toEqual({ error });
    });
  }
  it('refuses a ring spanning two adjacent regions', () => {
    guest = new FakeGuest(ADJACENT_LAYOUT);
    expect(make(guest, { desc: 0x40000n - 64n })).toEqual({ error: 'descriptor ring is outside guest memory (or not within one region)' });
  });
  it('refuses rings in a detached region', () => {
    guest = new FakeGuest();
    guest.detach(1);
    expect(make(guest, {})).toEqual({ error: 'descriptor ring is outside guest memory (or not within one region)' });
  });
});

describe('chain helpers', () => {
  const views = () => [new Uint8Array(3), new Uint8Array(4), new Uint8Array(2)];
  it('ChainWriter scatters across views and stops at the end', () => {
    const vs = views();
    const w = new ChainWriter(vs);
    expect(w.remaining).toBe(9);
    expect(w.write(Buffer.from('ab'))).toBe(2);
    expect(w.write(Buffer.from('cdefg'))).toBe(5);
    expect(w.remaining).toBe(2);
    expect(w.write(Buffer.from('hijk'))).toBe(2);
    expect(w.write(Buffer.from('z'))).toBe(0);
    expect(w.written).toBe(9);
    expect(Buffer.concat(vs).toString()).toBe('abcdefghi');
  });
  it('readAll gathers a copy', () => {
    const vs = [Buffer.from('ab'), Buffer.from('cde')];
    const all = readAll(vs)!;
    vs[0]![0] = 0x7a;
    expect(all.toString()).toBe('abcde');
    expect(readAll([])!.length).toBe(0);
  });
  it('sliceViews skips a header and bounds the length', () => {
    const vs = [Buffer.from('abc'), Buffer.from('defg'), Buffer.from('hi')];
    expect(sliceViews(vs, 2).map((v) => Buffer.from(v).toString())).toEqual(['c', 'defg', 'hi']);
    expect(sliceViews(vs, 3, 5).map((v) => Buffer.from(v).toString())).toEqual(['defg', 'h']);
    expect(sliceViews(vs, 9)).toEqual([]);
    expect(sliceViews(vs, 0, 0)).toEqual([]);
  });
  it('segments name the mapping (ArrayBuffer), offset and length of each view', () => {
    const ab = new ArrayBuffer(32);
    const vs = [new Uint8Array(ab, 4, 8), new Uint8Array(ab, 20, 3)];
    expect(segments(vs)).toEqual([{ buffer: ab, offset: 4, length: 8 }, { buffer: ab, offset: 20, length: 3 }]);
  });
});
