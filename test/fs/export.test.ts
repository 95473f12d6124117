/**
 * Persistent handles in the core (issue 8): inodes that left memory come back under their old node
 * id from sealed records (LOOKUP of "." on an unknown node id), and a successor process takes over a
 * predecessor's sealed state. Nothing outside the shared directory comes back.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { errnoOf, found } from '../helpers/errno.js';
import { makeFs, ctx, B, walk, readAll, useCleanup } from '../helpers/fs-fixture.js';
import type { PassthroughFs } from '../../src/fs/passthrough.js';
import { ephemeralKey } from '../../src/handle/key.js';
import { Sealer } from '../../src/handle/seal.js';
import { encodeState, decodeState } from '../../src/fs/export-table.js';

const { cores: open, dir } = useCleanup();

function tree(): { top: string; root: string; outside: string } {
  const top = dir('hfs-export-');
  const root = path.join(top, 'shared');
  const outside = path.join(top, 'outside');
  fs.mkdirSync(path.join(root, 'a/b/c'), { recursive: true });
  fs.mkdirSync(outside);
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(root, 'a/b/c', `f${i}`), `file-${i}`);
  return { top, root, outside };
}

/** Forget a node and its ancestors as the kernel would when it drops them. */
async function forgetChain(pfs: PassthroughFs, rel: string): Promise<bigint[]> {
  const ids: bigint[] = [];
  let parent = 1n;
  for (const part of rel.split('/')) {
    const e = found(await pfs.lookup(ctx, parent, B(part)));
    ids.push(e.nodeid);
    parent = e.nodeid;
  }
  // each lookup above counted one; walk() style lookups may have counted more: drop everything
  for (const id of ids) pfs.forget(ctx, id, 1n << 40n);
  return ids;
}

describe('records of forgotten inodes', () => {
  for (const reopen of ['path', 'handle'] as const) {
    it(`LOOKUP "." on a forgotten node id brings the same file back under the same id (reopen by ${reopen})`, async () => {
      const { root } = tree();
      const { pfs } = makeFs(root, { reopen });
      open.push(pfs);
      const ids = await forgetChain(pfs, 'a/b/c/f7');
      expect(pfs.counters().inodes).toBe(1); // only the root is in memory
      const f = ids[3]!;
      const e = found(await pfs.lookup(ctx, f, B('.')));
      expect(e.nodeid).toBe(f);
      expect(await readAll(pfs, f)).toBe('file-7');
      // its directory came back too, and '..' answers
      const up = found(await pfs.lookup(ctx, ids[2]!, B('..')));
      expect(up.nodeid).toBe(ids[1]);
      expect(pfs.counters().resurrected).toBeGreaterThanOrEqual(4);
    });
  }

  it('a file replaced or a directory moved outside meanwhile gives ESTALE, never another file', async () => {
    const { root, outside } = tree();
    const { pfs } = makeFs(root, { reopen: 'handle' });
    open.push(pfs);
    const f = (await forgetChain(pfs, 'a/b/c/f1'))[3]!;
    const c = (await forgetChain(pfs, 'a/b/c'))[2]!;
    fs.unlinkSync(path.join(root, 'a/b/c/f1'));
    fs.writeFileSync(path.join(root, 'a/b/c/f1'), 'IMPOSTOR');
    expect(await errnoOf(pfs.lookup(ctx, f, B('.')))).toBe('ESTALE');
    fs.renameSync(path.join(root, 'a/b/c'), path.join(outside, 'c'));
    expect(await errnoOf(pfs.lookup(ctx, c, B('.')))).toBe('ESTALE');
    expect(await errnoOf(pfs.getattr(ctx, 123456n))).toBe('ESTALE');
  });
});

describe('successor state', () => {
  /** A core on `root` under a fresh key (cleaned up after the test); its successors use that key. */
  function predecessor(root: string): { key: Buffer; a: PassthroughFs } {
    const key = ephemeralKey();
    const a = makeFs(root, { key }).pfs;
    open.push(a);
    return { key, a };
  }
  /** The predecessor's state, and the predecessor gone. */
  async function retire(a: PassthroughFs): Promise<Buffer> {
    const state = a.exportState();
    await a.destroy();
    open.splice(open.indexOf(a), 1);
    return state;
  }
  function successor(root: string, key: Buffer): PassthroughFs {
    const b = makeFs(root, { key }).pfs;
    open.push(b);
    return b;
  }

  it('a successor with the same key serves the same node ids; new ids never collide', async () => {
    const { root } = tree();
    const { key, a } = predecessor(root);
    const nodes: bigint[] = [];
    for (let i = 0; i < 20; i++) nodes.push((await walk(a, `a/b/c/f${i}`)).nodeid);
    const state = await retire(a);
    const b = successor(root, key);
    expect(b.importState(state)).toEqual({ ok: true, records: expect.any(Number) });
    for (let i = 0; i < 20; i++) expect(await readAll(b, nodes[i]!)).toBe(`file-${i}`);
    fs.writeFileSync(path.join(root, 'fresh'), 'x');
    const fresh = found(await b.lookup(ctx, 1n, B('fresh')));
    expect(fresh.nodeid).toBeGreaterThan(nodes.reduce((m, x) => (x > m ? x : m), 0n));
  });

  it('after a crash (approximate records) a FORGET beyond the restored count is expected: counted apart, not as a wrong count', async () => {
    const { root } = tree();
    const { key, a } = predecessor(root);
    const f = await walk(a, 'a/b/c/f1');
    // the client looks it up twice more: a crashed worker's stream would not have these
    found(await a.lookup(ctx, (await walk(a, 'a/b/c')).nodeid, B('f1')));
    const state = await retire(a);
    for (const approximate of [false, true]) {
      const b = successor(root, key);
      expect(b.importState(state, false, approximate).ok).toBe(true);
      expect(await readAll(b, f.nodeid)).toBe('file-1');
      // one more than the exported count (2): exact state says a count went wrong, approximate does not
      b.forget(ctx, f.nodeid, 3n);
      expect(b.counters()).toMatchObject(approximate ? { forgetAfterCrash: 1, forgetUnderflow: 0 } : { forgetAfterCrash: 0, forgetUnderflow: 1 });
    }
  });

  it('open files and directories (fh) pass to the successor and keep working, O_APPEND and the listing position included', async () => {
    const { root } = tree();
    const { key, a } = predecessor(root);
    const f = await walk(a, 'a/b/c/f1');
    const of = await a.open(ctx, f.nodeid, 0o2001 /* O_WRONLY|O_APPEND */);
    await a.write(ctx, f.nodeid, of.fh, 0, Buffer.from('+A'), 0);
    const c = await walk(a, 'a/b/c');
    const od = await a.opendir(ctx, c.nodeid, 0);
    const seen: string[] = [];
    let last = 0n;
    await a.readdir(ctx, c.nodeid, od.fh, 0n, 4096, (e) => {
      if (seen.length >= 5) return false;
      seen.push(e.name.toString());
      last = e.off;
      return true;
    });
    const state = await retire(a);
    const b = successor(root, key);
    expect(b.importState(state).ok).toBe(true);
    await b.write(ctx, f.nodeid, of.fh, 0, Buffer.from('+B'), 0);
    expect(fs.readFileSync(path.join(root, 'a/b/c/f1'), 'utf8')).toBe('file-1+A+B');
    await b.readdir(ctx, c.nodeid, od.fh, last, 4096, (e) => {
      seen.push(e.name.toString());
      return true;
    });
    expect(seen.sort()).toEqual(['.', '..', ...Array.from({ length: 20 }, (_, i) => `f${i}`)].sort());
    await b.release(ctx, f.nodeid, of.fh, 0, 0n, false);
    await b.releasedir(ctx, c.nodeid, od.fh);
    expect(await errnoOf(b.read(ctx, f.nodeid, of.fh, 0, 10))).toBe('EBADF');
    // a new fh never collides with a restored one
    const o2 = await b.open(ctx, f.nodeid, 0);
    expect(o2.fh).toBeGreaterThan(od.fh);
  });

  it('after a key rotation the successor still takes the state and resurrects the old node ids (grace), and not once the key is gone', async () => {
    const { root } = tree();
    const oldKey = ephemeralKey();
    const a = makeFs(root, { key: oldKey }).pfs;
    open.push(a);
    const f = (await walk(a, 'a/b/c/f3')).nodeid;
    const state = a.exportState();
    await a.destroy();
    open.pop();
    const b = makeFs(root, { key: ephemeralKey(), previousKeys: [oldKey] }).pfs;
    open.push(b);
    expect(b.importState(state).ok).toBe(true);
    expect(await readAll(b, f)).toBe('file-3');
    const c = makeFs(root, { key: ephemeralKey() }).pfs;
    open.push(c);
    expect(c.importState(state).ok).toBe(false);
    expect(await errnoOf(c.getattr(ctx, f))).toBe('ESTALE');
  });

  it('refuses a state sealed under another key, and every truncated, flipped or reordered state', async () => {
    const { root } = tree();
    const key = ephemeralKey();
    const a = makeFs(root, { key }).pfs;
    open.push(a);
    for (let i = 0; i < 5; i++) await walk(a, `a/b/c/f${i}`);
    const state = a.exportState();
    const other = makeFs(root).pfs;
    open.push(other);
    expect(other.importState(state).ok).toBe(false);
    // the server's own sealer (its services record) reads its own state
    const sealerRef = (a as unknown as { s: { sealer: Sealer } }).s.sealer;
    const good = decodeState(sealerRef, state);
    expect(good.ok).toBe(true);
    const bad: Buffer[] = [];
    for (let n = 0; n < state.length; n += 3) bad.push(state.subarray(0, n));
    for (let bit = 0; bit < state.length * 8; bit += 5) {
      const f = Buffer.from(state);
      f[bit >> 3]! ^= 1 << (bit & 7);
      bad.push(f);
    }
    if (good.ok && good.state.records.length >= 2) {
      const recs = [...good.state.records];
      [recs[0], recs[1]] = [recs[1]!, recs[0]!];
      const reordered = encodeState(sealerRef, { ...good.state, records: recs });
      // re-sealed by the key holder it is valid; spliced into the old seal it is not
      const spliced = Buffer.concat([reordered.subarray(0, reordered.length - 16), state.subarray(state.length - 16)]);
      bad.push(spliced);
    }
    bad.push(Buffer.concat([state, Buffer.from([0])]));
    for (const b of bad) {
      let r: ReturnType<typeof decodeState> | undefined;
      expect(() => { r = decodeState(sealerRef, b); }).not.toThrow();
      expect(r!.ok).toBe(false);
    }
    const b2 = makeFs(root, { key }).pfs;
    open.push(b2);
    for (const b of bad.slice(0, 50)) expect(b2.importState(b).ok).toBe(false);
  });
});
