/**
 * Bounded, seeded fuzz of the vhost-user codecs. Every case is reproducible from the printed seed.
 * - Split queue: random and half-valid descriptor tables, indirect tables, avail entries and indices,
 *   lengths and flags, a guest rewriting the ring between pops and regions unmapped mid-run. No
 *   exception escapes, every view lies inside a region, the byte counts add up, guards stay intact.
 * - GuestMemory: random add/remove/replace/detach against a byte-level model of the address space.
 * - Messages: mutated QEMU message streams cut into random chunks with random fds. No exception
 *   escapes, and every fd fed in comes back to the caller exactly once.
 */
import { describe, expect, it } from 'vitest';
import { GuestMemory, MAX_MEM_REGIONS, type MemoryRegion } from '../../src/frontends/vhost-user/guest-memory.js';
import {
  decodeMessage, MessageReader, messageFds, REQ_NAMES, Req, VRING_NOFD_MASK,
} from '../../src/frontends/vhost-user/messages.js';
import {
  ChainWriter, readAll, SplitQueue, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
} from '../../src/frontends/vhost-user/vring.js';
import { mulberry32 } from '../helpers/prng.js';
import { ADJACENT_LAYOUT, DEFAULT_LAYOUT, FakeDriver, FakeGuest, type Buf } from '../helpers/vhost-fake-driver.js';

const SEED = 0x5eed_12;

/** Runs `cases` cases, each with its own PRNG; a failure names the seed that reproduces it. */
function fuzz(name: string, cases: number, body: (rnd: () => number, seed: number) => void): void {
  for (let i = 0; i < cases; i++) {
    const seed = (SEED + i * 7919) >>> 0;
    try {
      body(mulberry32(seed), seed);
    } catch (e) {
      throw new Error(`${name}: failed with seed ${seed} (case ${i}): ${(e as Error).stack ?? String(e)}`);
    }
  }
}
const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const int = (rnd: () => number, n: number): number => Math.floor(rnd() * n);

describe('fuzz: split queue', () => {
  it('never throws, never returns a view outside a region, never writes a guard byte', () => {
    let chains = 0;
    let broken = 0;
    const reasons = new Set<string>();
    fuzz('vring', 1500, (rnd) => {
      const g = new FakeGuest(rnd() < 0.5 ? DEFAULT_LAYOUT : ADJACENT_LAYOUT);
      const num = 1 << int(rnd, 6);
      const maxChainBytes = rnd() < 0.3 ? 1 + int(rnd, 4096) : undefined;
      const d = new FakeDriver(g, { num, eventIdx: rnd() < 0.5, indirect: rnd() < 0.7, base: int(rnd, 0x10000), maxChainBytes });
      const q = d.queue();
      const ringGone = () => g.regions[1]!.buf.byteLength === 0;
      const end = g.regions.at(-1)!.gpa + g.regions.at(-1)!.size;
      const hostileAddr = (): bigint => BigInt(pick(rnd, [
        0xa000 - int(rnd, 64), end - int(rnd, 64), 0x40000 - int(rnd, 64), 0, 2 ** 52 + int(rnd, 99),
      ])) + (rnd() < 0.2 ? BigInt(int(rnd, 2 ** 32)) << 32n : 0n);
      const hostileLen = (): number => pick(rnd, [0, 1 + int(rnd, 64), 16 * int(rnd, 9), 8 + 16 * int(rnd, 4), int(rnd, 2 ** 32), 0xffffffff]);
      /** Well-formed chains of random shapes: direct or indirect, data anywhere in RAM (spanning regions too). */
      const postValid = () => {
        if (ringGone()) return;
        const batch = 1 + int(rnd, Math.min(num, 4));
        let budget = num; // ring descriptors free: each chain left to post keeps one for an indirect head
        const heads: number[] = [];
        for (let k = 0; k < batch; k++) {
          const count = 1 + int(rnd, 4);
          const bufs = Array.from({ length: count }, (_, i): Buf => {
            const n = rnd() < 0.1 ? 0 : 1 + int(rnd, 300);
            const gpa = rnd() < 0.1 && g.regions.length > 2 ? 0x40000 - int(rnd, Math.max(1, n)) : d.alloc(n, int(rnd, 256));
            return { gpa, len: n, write: i >= count / 2 && rnd() < 0.8 };
          });
          for (let i = 1; i < bufs.length; i++) if (bufs[i - 1]!.write) bufs[i]!.write = true;
          const direct = (!q.indirect || rnd() < 0.5) && bufs.length <= budget - (batch - k - 1);
          if (!direct && !q.indirect) break;
          heads.push(direct ? d.chain(bufs) : d.indirectChain(bufs));
          budget -= direct ? bufs.length : 1;
        }
        d.post(...heads);
      };
      /** One hostile edit: a descriptor field (ring or indirect table), an avail entry, the avail idx, the event fields. */
      const mutate = () => {
        if (ringGone()) return;
        const r = rnd();
        const [table, entries] = rnd() < 0.3 && d.tables.length > 0 ? pick(rnd, d.tables) : [d.desc, num];
        const at = table + 16 * int(rnd, entries);
        if (r < 0.2) g.w64(at, hostileAddr());
        else if (r < 0.4) g.w32(at + 8, hostileLen());
        else if (r < 0.6) g.w16(at + 12, rnd() < 0.7 ? int(rnd, 8) : int(rnd, 0x10000));
        else if (r < 0.75) g.w16(at + 14, rnd() < 0.5 ? int(rnd, Math.max(entries, num) + 2) : int(rnd, 0x10000));
        else if (r < 0.9) g.w16(d.avail + 4 + 2 * int(rnd, num), rnd() < 0.7 ? int(rnd, num) : int(rnd, 0x10000));
        else d.setAvailIdx(rnd() < 0.7 ? d.availIdx + int(rnd, num + 2) : int(rnd, 0x10000));
        if (rnd() < 0.3) d.setUsedEvent(int(rnd, 0x10000));
        if (rnd() < 0.3) d.setNoInterrupt(rnd() < 0.5);
      };
      postValid();
      for (let k = int(rnd, 4); k > 0; k--) mutate();
      for (let step = 0; step < 24; step++) {
        const r = q.pop();
        if (r === null) {
          q.updateAvailEvent();
          postValid();
          if (rnd() < 0.3) mutate();
        } else if ('broken' in r) {
          expect(typeof r.broken).toBe('string');
          expect(q.pop()).toEqual(r);
          broken++;
          reasons.add(r.broken.replace(/[0-9]+/g, 'N'));
          break;
        } else {
          chains++;
          expect(r.head).toBeLessThan(num);
          for (const v of [...r.readable, ...r.writable]) expect(g.inRegion(v)).toBe(true);
          expect(r.readable.reduce((s, v) => s + v.byteLength, 0)).toBe(r.readableBytes);
          expect(r.writable.reduce((s, v) => s + v.byteLength, 0)).toBe(r.writableBytes);
          expect(r.readableBytes + r.writableBytes).toBeLessThanOrEqual(maxChainBytes ?? 0xffffffff);
          expect(readAll(r.readable)?.length).toBe(r.readableBytes);
          const w = new ChainWriter(r.writable);
          const wrote = w.write(new Uint8Array(int(rnd, 700)).fill(0x5a));
          expect(w.written).toBe(wrote);
          expect(wrote).toBe(Math.min(r.writableBytes, wrote));
          const pushed = q.pushUsed(r.head, wrote);
          if (pushed !== null) expect(typeof pushed.broken).toBe('string');
          expect(typeof q.shouldNotify()).toBe('boolean');
        }
        if (rnd() < 0.1) mutate();
        if (rnd() < 0.02) g.detach(int(rnd, g.regions.length));
      }
      expect(g.guardsIntact()).toBe(true);
    });
    // the generator must reach both outcomes often, or the fuzz tests little
    expect(chains).toBeGreaterThan(5000);
    expect(broken).toBeGreaterThan(800);
    expect(reasons.size).toBeGreaterThanOrEqual(12);
  });

  it('pops exactly the chains a well-behaved driver posts, through random sizes and wraps', () => {
    fuzz('vring-valid', 300, (rnd) => {
      const g = new FakeGuest(ADJACENT_LAYOUT);
      const num = 1 << int(rnd, 6);
      const d = new FakeDriver(g, { num, indirect: true, eventIdx: rnd() < 0.5, base: int(rnd, 0x10000) });
      const q = d.queue();
      for (let round = 0; round < 4; round++) {
        const posted: { head: number; data: Buffer; wlen: number }[] = [];
        const batch = 1 + int(rnd, Math.min(num, 4));
        let budget = num; // ring descriptors free: each chain left to post keeps one for an indirect head
        for (let k = 0; k < batch; k++) {
          const nr = 1 + int(rnd, 3);
          const bufs = Array.from({ length: nr }, () => { const n = 1 + int(rnd, 40); const at = d.alloc(n, int(rnd, 256)); return { gpa: at, len: n }; });
          const wlen = int(rnd, 64);
          const all = wlen > 0 ? [...bufs, { gpa: d.alloc(wlen), len: wlen, write: true }] : bufs;
          const data = Buffer.concat(bufs.map((b) => g.read(b.gpa, b.len)));
          const direct = rnd() < 0.6 && all.length <= budget - (batch - k - 1);
          const head = direct ? d.chain(all) : d.indirectChain(all);
          budget -= direct ? all.length : 1;
          posted.push({ head, data, wlen });
        }
        d.post(...posted.map((p) => p.head));
        for (const p of posted) {
          const c = q.pop();
          if (c === null || 'broken' in c) throw new Error(`expected a chain: ${JSON.stringify(c)}`);
          expect(c.head).toBe(p.head);
          expect(readAll(c.readable)).toEqual(p.data);
          expect(c.writableBytes).toBe(p.wlen);
          expect(q.pushUsed(c.head, c.writableBytes)).toBeNull();
        }
        expect(q.pop()).toBeNull();
        expect(d.takeUsed()).toEqual(posted.map((p) => [p.head, p.wlen]));
        expect(q.lastAvailIdx).toBe(d.availIdx);
      }
      expect(g.guardsIntact()).toBe(true);
    });
  });
});

describe('fuzz: guest memory', () => {
  it('translate() matches a byte-level model of the regions through random add/remove/replace/detach', () => {
    fuzz('memory', 400, (rnd) => {
      const m = new GuestMemory();
      const pattern = (gpa: number) => (gpa * 131 + (gpa >>> 8)) & 0xff;
      type Live = MemoryRegion & { n: number; sz: number };
      let live: Live[] = [];
      const make = (): Live => {
        const n = 16 * int(rnd, 256);
        const sz = rnd() < 0.05 ? 0 : 16 * (1 + int(rnd, 32));
        const buf = new ArrayBuffer(sz + int(rnd, 2) * 16);
        const bytes = new Uint8Array(buf);
        for (let i = 0; i < sz; i++) bytes[i] = pattern(n + i);
        return { gpa: BigInt(n), size: BigInt(sz), uva: BigInt(16 * int(rnd, 512)), mmapOffset: 0n, bytes, n, sz };
      };
      const ok = (r: Live, others: Live[]) => r.sz > 0 && others.length < MAX_MEM_REGIONS && others.every((o) =>
        (r.gpa + r.size <= o.gpa || o.gpa + o.size <= r.gpa) && (r.uva + r.size <= o.uva || o.uva + o.size <= r.uva));
      const detached = new Set<Live>();
      for (let step = 0; step < 60; step++) {
        const op = rnd();
        if (op < 0.4) {
          const r = make();
          const err = m.add(r);
          expect(err === null).toBe(ok(r, live));
          if (err === null) live.push(r);
        } else if (op < 0.5 && live.length > 0) {
          const r = pick(rnd, live);
          expect(m.remove(r.gpa, r.size, r.uva)).toBe(r);
          live = live.filter((x) => x !== r);
        } else if (op < 0.55) {
          const next = Array.from({ length: int(rnd, 4) }, make);
          const valid = next.every((r, i) => ok(r, next.slice(0, i)));
          const res = m.replaceAll(next);
          expect('removed' in res).toBe(valid);
          if (valid) live = next;
        } else if (op < 0.6 && live.length > 0) {
          const r = pick(rnd, live);
          if (detached.has(r)) continue;
          structuredClone(r.bytes.buffer, { transfer: [r.bytes.buffer as ArrayBuffer] });
          detached.add(r);
        } else {
          const gpa = rnd() < 0.9 ? int(rnd, 16 * 300) : int(rnd, 2 ** 53);
          const len = rnd() < 0.9 ? int(rnd, 200) : int(rnd, 2 ** 32);
          const vs = m.translate(rnd() < 0.5 ? gpa : BigInt(gpa), len);
          let covered = len < 10_000;
          for (let a = gpa; covered && a < gpa + len; a++) {
            const r = live.find((x) => a >= x.n && a < x.n + x.sz);
            covered = r !== undefined && !detached.has(r);
          }
          if (len === 0) expect(vs).toEqual([]);
          else if (!covered) expect(vs).toBeNull();
          else {
            expect(vs).not.toBeNull();
            const all = readAll(vs!)!;
            expect(all.length).toBe(len);
            for (let i = 0; i < len; i++) if (all[i] !== pattern(gpa + i)) throw new Error(`byte ${i} of ${gpa}+${len} is wrong`);
            for (const v of vs!) expect(live.some((r) => v.buffer === r.bytes.buffer && v.byteOffset + v.byteLength <= r.sz)).toBe(true);
          }
        }
        expect(m.regions.length).toBe(live.length);
      }
    });
  });
});

describe('fuzz: messages', () => {
  const u32 = (...v: number[]) => Buffer.concat(v.map((x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x >>> 0); return b; }));
  const templates: [number, () => Buffer, number][] = [
    [Req.GET_FEATURES, () => Buffer.alloc(0), 0],
    [Req.SET_FEATURES, () => Buffer.alloc(8, 1), 0],
    [Req.SET_VRING_NUM, () => u32(1, 128), 0],
    [Req.SET_VRING_ADDR, () => Buffer.alloc(40, 2), 0],
    [Req.SET_VRING_KICK, () => u32(1, 0), 1],
    [Req.SET_VRING_CALL, () => u32(VRING_NOFD_MASK, 0), 0],
    [Req.SET_MEM_TABLE, () => Buffer.concat([u32(2, 0), Buffer.alloc(64, 3)]), 2],
    [Req.ADD_MEM_REG, () => Buffer.alloc(40, 4), 1],
    [Req.REM_MEM_REG, () => Buffer.alloc(40, 5), 0],
    [Req.SET_CONFIG, () => Buffer.concat([u32(0, 4, 0), Buffer.alloc(4)]), 0],
    [Req.GET_INFLIGHT_FD, () => Buffer.alloc(24), 0],
  ];
  it('never throws and hands every fd back exactly once, through mutated streams cut into random chunks', () => {
    let decodedOk = 0;
    let rejected = 0;
    let fatal = 0;
    fuzz('messages', 1500, (rnd) => {
      let nextFd = 100;
      const fed: number[] = [];
      const back: number[] = [];
      const parts: { bytes: Buffer; fds: number }[] = [];
      for (let k = 0; k < 1 + int(rnd, 6); k++) {
        const [request, payload, nfds] = pick(rnd, templates);
        let p = payload();
        let req = request;
        let flags = 1 | (rnd() < 0.3 ? 8 : 0);
        let size = p.length;
        let fds = nfds;
        const r = rnd();
        if (r < 0.1) req = int(rnd, 50);
        else if (r < 0.2) flags = int(rnd, 16);
        else if (r < 0.3) size = rnd() < 0.5 ? int(rnd, 64) : int(rnd, 2 ** 32);
        else if (r < 0.4) fds = int(rnd, 4);
        else if (r < 0.55 && p.length > 0) { p = Buffer.from(p); p[int(rnd, p.length)] = int(rnd, 256); }
        else if (r < 0.6) fds = 9 + int(rnd, 3);
        const head = u32(req, flags, size);
        const body = size <= p.length ? p.subarray(0, size) : Buffer.concat([p, Buffer.alloc(Math.min(size - p.length, 200))]);
        parts.push({ bytes: Buffer.concat([head, body]), fds });
      }
      const stream = Buffer.concat(parts.map((x) => x.bytes));
      const totalFds = parts.reduce((s, x) => s + x.fds, 0);
      const reader = new MessageReader();
      let off = 0;
      let dead = false;
      let left = totalFds;
      while (off < stream.length && !dead) {
        const n = 1 + int(rnd, rnd() < 0.5 ? 16 : stream.length);
        const chunk = stream.subarray(off, off + n);
        off += chunk.length;
        const give = Math.min(left, rnd() < 0.3 ? int(rnd, 4) : 0);
        left -= give;
        const fds = Array.from({ length: give }, () => nextFd++);
        fed.push(...fds);
        const got = reader.feed(chunk, fds);
        if (!Array.isArray(got)) {
          expect(typeof got.fatal).toBe('string');
          back.push(...got.fds);
          dead = true;
          fatal++;
          break;
        }
        for (const m of got) {
          const d = decodeMessage(m);
          if ('error' in d) {
            expect(d.fds).toEqual(m.fds);
            back.push(...d.fds);
            rejected++;
          } else {
            expect(REQ_NAMES.has(d.request)).toBe(true);
            expect(messageFds(d).sort()).toEqual([...m.fds].sort());
            back.push(...messageFds(d));
            decodedOk++;
          }
        }
      }
      if (!dead) back.push(...reader.close());
      expect(back.sort((a, b) => a - b)).toEqual(fed.sort((a, b) => a - b));
    });
    expect(decodedOk).toBeGreaterThan(500);
    expect(rejected).toBeGreaterThan(200);
    expect(fatal).toBeGreaterThan(100);
  });

  it('decodeMessage never throws on random payloads, sizes and fd counts for every request number', () => {
    fuzz('decode', 3000, (rnd) => {
      const request = rnd() < 0.9 ? pick(rnd, [...REQ_NAMES.keys()]) : int(rnd, 2 ** 32);
      const payload = Buffer.from(Array.from({ length: rnd() < 0.5 ? int(rnd, 48) : int(rnd, 400) }, () => int(rnd, 256)));
      if (rnd() < 0.3 && payload.length >= 8) payload.writeUInt32LE(int(rnd, 10), 0);
      const fds = Array.from({ length: int(rnd, 10) }, (_, i) => (rnd() < 0.05 ? -1 : 3 + i));
      const d = decodeMessage({ request, flags: int(rnd, 16), payload, fds });
      if ('error' in d) expect(d.fds).toEqual(fds);
      else expect(messageFds(d).sort()).toEqual([...fds].sort());
    });
  });
});
