import { describe, expect, it } from 'vitest';
import { DefaultFileSystem } from '../../src/fs/filesystem.js';
import type { Attr, Context, Entry } from '../../src/fs/types.js';
import { E, failure, type FsError } from '../../src/errors.js';
import { PathTable, isRepresentable, splitPath } from '../../src/frontends/highlevel/path-table.js';

const ctx: Context = { uid: 0, gid: 0, pid: 1, unique: 1n };
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

interface Node { id: bigint; mode: number; children: Map<string, bigint>; nlookup: number }

/** An in-memory tree that counts lookups and forgets per node (the balance the table must keep). */
class StubFs extends DefaultFileSystem {
  nodes = new Map<bigint, Node>();
  next = 2n;
  lookupCalls = 0;
  forgetCalls = 0;
  /** how long the table may trust a name (the core sets it from its cache policy) */
  entryTimeoutMs = 60_000;
  delay = 0;
  constructor() {
    super();
    this.nodes.set(1n, { id: 1n, mode: S_IFDIR | 0o755, children: new Map(), nlookup: 0 });
  }
  mk(parent: bigint, name: string, dir = false): bigint {
    const id = this.next++;
    this.nodes.set(id, { id, mode: (dir ? S_IFDIR : S_IFREG) | 0o644, children: new Map(), nlookup: 0 });
    this.nodes.get(parent)!.children.set(name, id);
    return id;
  }
  /** mkdir -p style: returns the id of the last component */
  path(p: string, lastIsDir = false): bigint {
    const parts = p.split('/').filter(Boolean);
    let cur = 1n;
    parts.forEach((part, i) => {
      const n = this.nodes.get(cur)!;
      cur = n.children.get(part) ?? this.mk(cur, part, i < parts.length - 1 || lastIsDir);
    });
    return cur;
  }
  entry(id: bigint): Entry {
    const attr = { mode: this.nodes.get(id)!.mode } as Attr;
    return { nodeid: id, generation: 0n, attr, entryTimeoutMs: this.entryTimeoutMs, attrTimeoutMs: 0 };
  }
  override async lookup(_c: Context, parent: bigint, name: Buffer): Promise<Entry | FsError> {
    this.lookupCalls++;
    if (this.delay) await new Promise((r) => setTimeout(r, this.delay));
    const id = this.nodes.get(parent)?.children.get(name.toString());
    // a missing name answered as the passthrough filesystem answers it: a value, not a rejection
    if (id === undefined) return failure(E.ENOENT);
    this.nodes.get(id)!.nlookup++;
    return this.entry(id);
  }
  override forget(_c: Context, nodeid: bigint, n: bigint): void {
    this.forgetCalls++;
    const node = this.nodes.get(nodeid)!;
    node.nlookup -= Number(n);
    if (node.nlookup < 0) throw new Error(`forget below zero on ${nodeid}`);
  }
  /** a lookup-counted Entry for a node created by mkdir/create */
  created(parent: bigint, name: string, dir = false): Entry {
    const id = this.mk(parent, name, dir);
    this.nodes.get(id)!.nlookup++;
    return this.entry(id);
  }
  held(): number {
    let s = 0;
    for (const n of this.nodes.values()) s += n.nlookup;
    return s;
  }
}

function balanced(fs: StubFs, t: PathTable): void {
  // what the stub holds is exactly what the table holds
  expect(fs.held()).toBe(t.lookups - t.forgets);
  expect(t.lookups - t.forgets).toBe(t.size);
}

describe('PathTable', () => {
  it('resolves component by component and caches', async () => {
    const fs = new StubFs();
    const c = fs.path('/a/b/c');
    const t = new PathTable(fs);
    const r = await t.resolve(ctx, '/a/b/c');
    expect(r.nodeid).toBe(c);
    r.release();
    expect(fs.lookupCalls).toBe(3);
    (await t.resolve(ctx, '/a//b/c/')).release();
    expect(fs.lookupCalls).toBe(3);
    expect(t.peek('/a/b')?.name.toString()).toBe('b');
    expect(t.peek('/a/b')?.parent).toBe(t.peek('/a')?.nodeid);
    const root = await t.resolve(ctx, '/');
    expect(root.nodeid).toBe(1n);
    root.release();
    balanced(fs, t);
    t.clear();
    expect(fs.held()).toBe(0);
  });

  it('a failed lookup holds nothing', async () => {
    const fs = new StubFs();
    fs.path('/a/x');
    const t = new PathTable(fs);
    await expect(t.resolve(ctx, '/a/missing/z')).rejects.toMatchObject({ code: 'ENOENT' });
    balanced(fs, t);
    expect(t.paths()).toEqual(['/a']);
  });

  it('rename moves a directory with its cached subtree, keys and all', async () => {
    const fs = new StubFs();
    const a = fs.path('/a', true);
    const b = fs.path('/a/b', true);
    const c = fs.path('/a/b/c');
    const d = fs.path('/a/b/sub/d');
    const t = new PathTable(fs);
    for (const p of ['/a/b/c', '/a/b/sub/d']) (await t.resolve(ctx, p)).release();
    expect(t.paths()).toEqual(['/a', '/a/b', '/a/b/c', '/a/b/sub', '/a/b/sub/d']);

    // what the adapter does: resolve both parents, fs.rename, then table.rename
    const from = await t.resolve(ctx, '/a');
    const to = await t.resolve(ctx, '/');
    fs.nodes.get(a)!.children.delete('b');
    fs.nodes.get(1n)!.children.set('x', b);
    t.rename(from, 'b', to, 'x');
    from.release();
    to.release();

    expect(t.paths()).toEqual(['/a', '/x', '/x/c', '/x/sub', '/x/sub/d']);
    expect(t.peek('/x')).toMatchObject({ nodeid: b, parent: 1n });
    expect(t.peek('/x')!.name.toString()).toBe('x');
    expect(t.peek('/x/c')).toMatchObject({ nodeid: c, parent: b });
    expect(t.peek('/a/b')).toBeNull();
    const before = fs.lookupCalls;
    const r = await t.resolve(ctx, '/x/sub/d');
    expect(r.nodeid).toBe(d);
    r.release();
    expect(fs.lookupCalls).toBe(before); // served from the moved subtree
    await expect(t.resolve(ctx, '/a/b/c')).rejects.toMatchObject({ code: 'ENOENT' });
    balanced(fs, t);
  });

  it('rename over a cached target forgets the replaced subtree', async () => {
    const fs = new StubFs();
    const src = fs.path('/s', true);
    fs.path('/t/old/deep');
    const t = new PathTable(fs);
    for (const p of ['/s', '/t/old/deep']) (await t.resolve(ctx, p)).release();
    const from = await t.resolve(ctx, '/');
    const to = await t.resolve(ctx, '/');
    t.rename(from, 's', to, 't');
    from.release();
    to.release();
    expect(t.paths()).toEqual(['/t']);
    expect(t.peek('/t')!.nodeid).toBe(src);
    balanced(fs, t);
  });

  it('remove (unlink/rmdir) forgets the entry and its cached descendants', async () => {
    const fs = new StubFs();
    fs.path('/d/e/f');
    fs.path('/d/g');
    fs.path('/keep');
    const t = new PathTable(fs);
    for (const p of ['/d/e/f', '/d/g', '/keep']) (await t.resolve(ctx, p)).release();
    const root = await t.resolve(ctx, '/');
    t.remove(root, 'd');
    root.release();
    expect(t.paths()).toEqual(['/keep']);
    balanced(fs, t);
  });

  it('evicts least recently used entries beyond the bound, forgetting each', async () => {
    const fs = new StubFs();
    for (let i = 0; i < 10; i++) fs.path(`/f${i}`);
    const t = new PathTable(fs, { max: 4 });
    for (let i = 0; i < 10; i++) {
      (await t.resolve(ctx, `/f${i}`)).release();
      if (i === 5) (await t.resolve(ctx, '/f2')).release(); // evicted already: looked up again
    }
    expect(t.size).toBe(4);
    expect(t.evictions).toBeGreaterThanOrEqual(6);
    expect(t.paths()).toEqual(['/f6', '/f7', '/f8', '/f9']);
    balanced(fs, t);
    // a recently used entry survives
    (await t.resolve(ctx, '/f6')).release();
    fs.path('/new');
    (await t.resolve(ctx, '/new')).release();
    expect(t.paths()).toContain('/f6');
    expect(t.paths()).not.toContain('/f7');
    balanced(fs, t);
    t.clear();
    expect(fs.held()).toBe(0);
  });

  it('an evicted directory keeps its cached children reachable; they stay balanced', async () => {
    const fs = new StubFs();
    const deep = fs.path('/p/q/r');
    const t = new PathTable(fs, { max: 1 });
    const r = await t.resolve(ctx, '/p/q/r');
    expect(r.nodeid).toBe(deep);
    r.release();
    expect(t.paths()).toEqual(['/p/q/r']);
    balanced(fs, t);
    const again = await t.resolve(ctx, '/p/q/r');
    expect(again.nodeid).toBe(deep);
    again.release();
    balanced(fs, t);
  });

  it('a pinned entry is neither evicted nor forgotten until released', async () => {
    const fs = new StubFs();
    const a = fs.path('/a');
    fs.path('/b');
    fs.path('/c');
    const t = new PathTable(fs, { max: 1 });
    const held = await t.resolve(ctx, '/a');
    (await t.resolve(ctx, '/b')).release();
    (await t.resolve(ctx, '/c')).release();
    expect(fs.nodes.get(a)!.nlookup).toBe(1);
    // removed while in use: the forget waits for the release
    const root = await t.resolve(ctx, '/');
    t.remove(root, 'a');
    root.release();
    expect(fs.nodes.get(a)!.nlookup).toBe(1);
    held.release();
    expect(fs.nodes.get(a)!.nlookup).toBe(0);
    expect(fs.held()).toBe(t.lookups - t.forgets);
  });

  it('racing resolutions of one path keep a single lookup', async () => {
    const fs = new StubFs();
    fs.path('/x/y');
    fs.delay = 5;
    const t = new PathTable(fs);
    const rs = await Promise.all([t.resolve(ctx, '/x/y'), t.resolve(ctx, '/x/y'), t.resolve(ctx, '/x')]);
    for (const r of rs) r.release();
    expect(t.size).toBe(2);
    balanced(fs, t);
  });

  it('add() takes over lookups of created nodes; unlink gives them back', async () => {
    const fs = new StubFs();
    const t = new PathTable(fs);
    const root = await t.resolve(ctx, '/');
    t.add(root, 'new', fs.created(1n, 'new', true));
    root.release();
    const dir = await t.resolve(ctx, '/new');
    t.add(dir, 'f', fs.created(dir.nodeid, 'f'));
    dir.release();
    expect(t.paths()).toEqual(['/new', '/new/f']);
    balanced(fs, t);
    const d2 = await t.resolve(ctx, '/new');
    t.remove(d2, 'f');
    d2.release();
    balanced(fs, t);
    t.clear();
    expect(fs.held()).toBe(0);
  });

  it('names: U+FFFD in a path is EILSEQ; only valid UTF-8 without U+FFFD is representable', () => {
    expect(() => splitPath('/a/\ufffd')).toThrow(expect.objectContaining({ code: 'EILSEQ' }));
    expect(splitPath('/a//b/')).toEqual(['a', 'b']);
    expect(isRepresentable(Buffer.from('héllo'))).toBe(true);
    expect(isRepresentable(Buffer.from([0x61, 0xff]))).toBe(false);
    expect(isRepresentable(Buffer.from('a\ufffd'))).toBe(false);
  });
});

describe('revalidation', () => {
  it('a cached name past its entry timeout is looked up again, and a replaced inode replaces the entry', async () => {
    const fs = new StubFs();
    fs.entryTimeoutMs = 0; // every use is past the timeout
    const a = fs.path('/d/f');
    const t = new PathTable(fs, { max: 100 });
    const r1 = await t.resolve(ctx, '/d/f');
    expect(r1.nodeid).toBe(a);
    r1.release();
    const calls = fs.lookupCalls;
    // the host replaces d/f with another inode
    const d = fs.path('/d', true);
    fs.nodes.get(d)!.children.delete('f');
    const b = fs.mk(d, 'f', false);
    const r2 = await t.resolve(ctx, '/d/f');
    expect(r2.nodeid).toBe(b);
    r2.release();
    expect(fs.lookupCalls).toBeGreaterThan(calls);
    // the old inode's lookup was handed back
    expect(fs.nodes.get(a)!.nlookup).toBe(0);
  });
});
