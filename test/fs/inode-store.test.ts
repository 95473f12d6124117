// The typed-array inode table against a model made of plain Maps: seeded random creates, lookups,
// renames, forgets and identity changes, through several growths of the table and the deletions
// of its open-addressing indexes.
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { identityOf, InodeStore, type Inode } from '../../src/fs/inode-store.js';
import type { FileHandle } from '../../src/handle/file-handle.js';

const log = pino({ level: 'silent' });
const S_IFDIR = 0o040000, S_IFREG = 0o100000;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

const handle = (i: number, len = 8, mountId = 7n): FileHandle => {
  const b = Buffer.alloc(len);
  b.writeUInt32LE(i >>> 0, 0);
  b.writeUInt32LE(0xa5a5a5a5, len >= 8 ? 4 : 0);
  return { type: 1, bytes: b, mountId };
};

interface Model {
  nodeid: bigint;
  handle: FileHandle | null;
  dev: number;
  ino: bigint;
  parent: bigint | null;
  name: Buffer | null;
  nlookup: number;
  children: number;
  opens: number;
  indexed: boolean;
}

describe('InodeStore (typed arrays)', () => {
  it('makes a root, finds it by node id and handle, and never drops it', () => {
    const dropped: bigint[] = [];
    const st = new InodeStore(1n, log, (i) => dropped.push(i.nodeid));
    const root = st.create({ nodeid: 1n, generation: 9n, type: S_IFDIR, handle: handle(1), seal: Buffer.alloc(32, 1), reopenable: false, dev: 5, ino: 2n });
    root.nlookup = 1;
    st.forget(root, 5);
    expect(st.get(1n)?.is(root)).toBe(true);
    expect(st.byHandle(handle(1))?.nodeid).toBe(1n);
    expect(root.generation).toBe(9n);
    expect(root.type).toBe(S_IFDIR);
    expect(root.reopenable).toBe(false);
    expect(root.seal?.equals(Buffer.alloc(32, 1))).toBe(true);
    expect(dropped).toEqual([]);
  });

  it('keeps long names and handles beside the slot, and compares names byte for byte', () => {
    const st = new InodeStore(1n, log, null);
    const root = st.create({ nodeid: 1n, generation: 1n, type: S_IFDIR, handle: handle(1), seal: null, reopenable: false, dev: 1, ino: 1n });
    const longName = Buffer.from([0xff, 0xfe, ...Buffer.from('x'.repeat(250))]);
    const longHandle = handle(99, 128);
    const a = st.create({ nodeid: 2n, generation: 1n, type: S_IFREG, handle: longHandle, seal: null, reopenable: true, dev: 1, ino: 2n });
    st.setParent(a, root, longName);
    expect(a.name?.equals(longName)).toBe(true);
    expect(a.linkedAs(root, longName)).toBe(true);
    expect(a.linkedAs(root, Buffer.from(longName).fill(0x79, 5, 6))).toBe(false);
    expect(st.byHandle(longHandle)?.is(a)).toBe(true);
    expect(a.handle?.bytes.equals(longHandle.bytes)).toBe(true);
    st.setParent(a, root, Buffer.from('short'));
    expect(a.name?.toString()).toBe('short');
    expect(a.linkedAs(root, Buffer.from('shorT'))).toBe(false);
    // a handle of another mount is another identity
    expect(st.byHandle({ ...longHandle, mountId: 8n })).toBeUndefined();
  });

  it('finds an inode without a handle by (dev, ino), also after its number changes', () => {
    const st = new InodeStore(1n, log, null);
    const a = st.create({ nodeid: 2n, generation: 1n, type: S_IFREG, handle: null, seal: null, reopenable: false, dev: 3, ino: 40n });
    expect(st.byDevIno(3, 40n)?.is(a)).toBe(true);
    a.ino = 41n;
    expect(st.byDevIno(3, 40n)).toBeUndefined();
    expect(st.byDevIno(3, 41n)?.is(a)).toBe(true);
    st.unindex(a);
    expect(st.byDevIno(3, 41n)).toBeUndefined();
    expect(st.get(2n)?.is(a)).toBe(true);
  });

  it('refuses a node id twice and node ids beyond 2^53, and finds none of a hostile one', () => {
    const st = new InodeStore(1n, log, null);
    st.create({ nodeid: 2n, generation: 1n, type: S_IFREG, handle: handle(2), seal: null, reopenable: true, dev: 1, ino: 2n });
    expect(() => st.create({ nodeid: 2n, generation: 1n, type: S_IFREG, handle: handle(3), seal: null, reopenable: true, dev: 1, ino: 3n })).toThrow();
    expect(() => st.create({ nodeid: 1n << 60n, generation: 1n, type: S_IFREG, handle: handle(4), seal: null, reopenable: true, dev: 1, ino: 4n })).toThrow(RangeError);
    for (const id of [0n, 3n, (1n << 64n) - 1n, (1n << 53n) + 2n, 2n + (1n << 53n), -1n]) expect(st.get(id)).toBeUndefined();
  });

  it('grows by chunks and indexes past 40,000 inodes, reuses freed slots, and finds every inode after', () => {
    const dropped: bigint[] = [];
    const st = new InodeStore(1n, log, (i) => dropped.push(i.nodeid));
    const root = st.create({ nodeid: 1n, generation: 1n, type: S_IFDIR, handle: handle(0), seal: null, reopenable: false, dev: 1, ino: 1n });
    const made: Inode[] = [];
    const N = 40_000;
    for (let k = 1; k <= N; k++) {
      const i = st.create({ nodeid: st.allocId(), generation: 2n, type: S_IFREG, handle: handle(k), seal: null, reopenable: true, dev: 1, ino: BigInt(k) });
      st.setParent(i, root, Buffer.from(`f${k}`));
      i.nlookup = 1;
      made.push(i);
    }
    const bytesFull = st.bytes;
    // half of them forgotten: their slots come back for the next ones
    for (let k = 0; k < N; k += 2) st.forget(made[k]!, 1);
    expect(dropped.length).toBe(N / 2);
    for (let k = 1; k <= N / 2; k++) {
      const i = st.create({ nodeid: st.allocId(), generation: 3n, type: S_IFREG, handle: handle(N + k), seal: null, reopenable: true, dev: 1, ino: BigInt(N + k) });
      st.setParent(i, root, Buffer.from(`g${k}`));
    }
    expect(st.bytes).toBe(bytesFull);
    expect(st.size).toBe(1 + N);
    expect(root.children).toBe(N);
    for (let k = 0; k < N; k++) {
      const old = made[k]!;
      const found = st.get(old.nodeid);
      if (k % 2 === 0) {
        expect(found).toBeUndefined();
        expect(st.byHandle(handle(k + 1))).toBeUndefined();
      } else {
        expect(found?.nodeid).toBe(old.nodeid);
        expect(found!.linkedAs(root, Buffer.from(`f${k + 1}`))).toBe(true);
        expect(st.byHandle(handle(k + 1))?.nodeid).toBe(old.nodeid);
      }
    }
    for (let k = 1; k <= N / 2; k++) {
      const i = st.byHandle(handle(N + k));
      expect(i?.generation).toBe(3n);
      expect(i?.name?.toString()).toBe(`g${k}`);
    }
  });

  it('agrees with a model over 60,000 random operations', () => {
    for (const seed of [1, 2, 3]) {
      const rand = rng(seed);
      const dropped = new Set<bigint>();
      const st = new InodeStore(1n, log, (i) => dropped.add(i.nodeid));
      const model = new Map<bigint, Model>();
      const root = st.create({ nodeid: 1n, generation: 1n, type: S_IFDIR, handle: handle(0), seal: null, reopenable: false, dev: 1, ino: 1n });
      root.nlookup = 1;
      model.set(1n, { nodeid: 1n, handle: handle(0), dev: 1, ino: 1n, parent: null, name: null, nlookup: 1, children: 0, opens: 0, indexed: true });
      let nextHandle = 1;
      const live = (): bigint[] => [...model.keys()];
      const pick = (): Model => model.get(live()[Math.floor(rand() * model.size)]!)!;
      const view = (m: Model): Inode => st.get(m.nodeid)!;
      /** drop what the model says can go, up the parent chain (what the table must do too) */
      const modelDrop = (id: bigint | null): void => {
        while (id !== null && id !== 1n) {
          const m = model.get(id);
          if (!m || m.nlookup > 0 || m.children > 0 || m.opens > 0) return;
          model.delete(id);
          const p = m.parent;
          if (p !== null) model.get(p)!.children--;
          id = p;
        }
      };
      for (let step = 0; step < 20_000; step++) {
        const r = rand();
        if (r < 0.4 || model.size < 4) {
          // a new inode beneath a random directory-ish parent, sometimes without a handle, sometimes a long handle
          const p = pick();
          const id = st.allocId();
          const noHandle = rand() < 0.1;
          const h = noHandle ? null : handle(nextHandle++, rand() < 0.05 ? 40 : 8);
          const dev = 1 + Math.floor(rand() * 3);
          const ino = id * 7n + 1000n;
          const name = Buffer.from(`n${id}${rand() < 0.05 ? 'y'.repeat(40) : ''}`);
          const i = st.create({ nodeid: id, generation: 1n, type: S_IFREG, handle: h, seal: null, reopenable: true, dev, ino });
          st.setParent(i, view(p), name);
          i.nlookup = 1;
          model.set(id, { nodeid: id, handle: h, dev, ino, parent: p.nodeid, name, nlookup: 1, children: 0, opens: 0, indexed: true });
          p.children++;
        } else if (r < 0.65) {
          const m = pick();
          if (m.nodeid === 1n) continue;
          const n = 1 + Math.floor(rand() * 2);
          st.forget(view(m), n);
          m.nlookup = Math.max(0, m.nlookup - n);
          modelDrop(m.nodeid);
        } else if (r < 0.75) {
          // a lookup of a known inode
          const m = pick();
          view(m).nlookup++;
          m.nlookup++;
        } else if (r < 0.85) {
          // rename: a new parent link
          const m = pick();
          const p = pick();
          if (m.nodeid === 1n || m.nodeid === p.nodeid || isAncestor(model, m.nodeid, p.nodeid)) continue;
          const name = Buffer.from(`r${step}`);
          const old = m.parent;
          m.parent = p.nodeid;
          m.name = name;
          p.children++;
          if (old !== null) model.get(old)!.children--;
          st.setParent(view(m), view(p), name);
          if (old !== null) modelDrop(old);
        } else if (r < 0.92) {
          // an open file keeps an inode whose lookups are gone
          const m = pick();
          const v = view(m);
          if (m.opens > 0 && rand() < 0.5) {
            v.opens--;
            m.opens--;
            st.maybeDrop(v);
            modelDrop(m.nodeid);
          } else {
            v.opens++;
            m.opens++;
          }
        } else if (r < 0.95) {
          const m = pick();
          if (m.nodeid === 1n) continue;
          st.unindex(view(m));
          m.indexed = false;
        } else {
          // a lookup of a node id never handed out, or gone
          expect(st.get(BigInt(Math.floor(rand() * 1e9)) + 1_000_000n)).toBeUndefined();
        }
      }
      // every live inode is found, with the model's fields; nothing dropped is found
      expect(st.size).toBe(model.size);
      for (const m of model.values()) {
        const v = st.get(m.nodeid);
        expect(v, `node ${m.nodeid} (seed ${seed})`).toBeDefined();
        expect(v!.nlookup).toBe(m.nlookup);
        expect(v!.children).toBe(m.children);
        expect(v!.opens).toBe(m.opens);
        expect(v!.parent?.nodeid ?? null).toBe(m.parent);
        if (m.name) expect(v!.name?.equals(m.name)).toBe(true);
        const found = m.handle ? st.byHandle(m.handle) : st.byDevIno(m.dev, m.ino);
        if (m.indexed) expect(found?.nodeid).toBe(m.nodeid);
        else expect(found).toBeUndefined();
        expect(dropped.has(m.nodeid)).toBe(false);
      }
      for (const id of dropped) expect(st.get(id)).toBeUndefined();
      expect([...st.all()].length).toBe(model.size);
    }
  });
});

function isAncestor(model: Map<bigint, Model>, a: bigint, of: bigint): boolean {
  for (let c: bigint | null = of; c !== null; c = model.get(c)?.parent ?? null) if (c === a) return true;
  return false;
}

describe('export identities (identityOf, Inode.identity)', () => {
  it('one key per (type, bytes): equal handles agree, a byte, the length or the type tells them apart; never a (dev, ino) key', () => {
    const keys = new Set<string>();
    const st = { devMajor: 8, devMinor: 1, ino: 5n };
    for (let i = 0; i < 2000; i++) {
      const h = handle(i, i % 3 === 0 ? 12 : 8);
      const k = identityOf(h, st);
      expect(identityOf({ ...h, bytes: Buffer.from(h.bytes) }, st)).toBe(k);
      keys.add(k);
      keys.add(identityOf({ ...h, type: 0x81 }, st));
      keys.add(identityOf({ ...h, type: 0x20001 }, st)); // FILEID_IS_DIR-style high bits
    }
    expect(keys.size).toBe(6000);
    // a handle whose bytes are a prefix of another's
    const long = handle(1, 12);
    expect(identityOf({ ...long, bytes: long.bytes.subarray(0, 8) }, st)).not.toBe(identityOf(long, st));
    const noHandle = identityOf(null, st);
    expect(keys.has(noHandle)).toBe(false);
    expect(noHandle).toBe(identityOf(null, { ...st }));
  });

  it("an inode's identity is the identity of the handle it was made with", () => {
    const s = new InodeStore(1n, log, () => {});
    const h = handle(42, 12);
    const i = s.create({ nodeid: 2n, generation: 1n, type: S_IFREG, handle: h, seal: null, reopenable: true, dev: 5, ino: 9n });
    expect(i.identity).toBe(identityOf(h, { devMajor: 0, devMinor: 5, ino: 9n }));
    const j = s.create({ nodeid: 3n, generation: 1n, type: S_IFREG, handle: null, seal: null, reopenable: false, dev: 5, ino: 10n });
    expect(j.identity).toBe('d5:10');
  });
});
