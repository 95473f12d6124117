/**
 * Directories of the filesystem core: opendir, readdir, readdirplus, releasedir, fsyncdir.
 * PassthroughFs driven through the FileSystem interface on a temp dir (../helpers/fs-fixture.ts),
 * every result compared with what the host says (fs.*Sync on the same tree, or the sys addon).
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type DirEntry, type Entry } from '../../src/fs/types.js';
import { sys, AT_FDCWD, O_DIRECTORY, O_RDONLY, S_IFIFO } from '../../src/sys/syscalls.js';
import { errnoOf } from '../helpers/errno.js';
import { B, ctx, root, pfs, cap, P, look, expectHostAttr, remakeFs, useFs } from '../helpers/fs-fixture.js';

useFs();

/** List a directory through readdir (or readdirplus) in batches of `k` accepted entries. */
async function listBatches(
  nodeid: bigint, k: number, plus: boolean,
): Promise<{ names: string[]; entries: Map<string, Entry | null>; calls: number }> {
  const o = await pfs.opendir(ctx, nodeid, O_RDONLY | O_DIRECTORY);
  const names: string[] = [];
  const entries = new Map<string, Entry | null>();
  let off = 0n;
  let calls = 0;
  for (;;) {
    let taken = 0;
    const take = (d: DirEntry, e: Entry | null): boolean => {
      if (taken === k) return false;
      taken++;
      names.push(d.name.toString('latin1'));
      entries.set(d.name.toString('latin1'), e);
      off = d.off;
      return true;
    };
    calls++;
    if (plus) await pfs.readdirplus(ctx, nodeid, o.fh, off, 4096, take);
    else await pfs.readdir(ctx, nodeid, o.fh, off, 4096, (d) => take(d, null));
    if (taken === 0) break;
    if (calls > 100_000) throw new Error('readdir does not end');
  }
  await pfs.releasedir(ctx, nodeid, o.fh);
  return { names, entries, calls };
}

describe('opendir, readdir, readdirplus', () => {
  const N = 150;
  const mkNames = (): string[] => {
    const names: string[] = [];
    for (let i = 0; i < N; i++) names.push(`name-${i}-${'q'.repeat(i % 37)}`);
    for (const n of names) fs.writeFileSync(P(`d/${n}`), '');
    return names;
  };

  it('readdir in small batches resumes from the last accepted entry: every name exactly once', async () => {
    fs.mkdirSync(P('d'));
    const names = mkNames();
    fs.mkdirSync(P('d/sub'));
    fs.symlinkSync('x', P('d/link'));
    const d = await look('d');
    for (const k of [1, 2, 7, 64, 10_000]) {
      const r = await listBatches(d.nodeid, k, false);
      expect(r.names.sort()).toEqual(['.', '..', 'link', 'sub', ...names].sort());
      if (k === 1) expect(r.calls).toBe(N + 5);
    }
  });

  it('readdir entries carry the host d_type and ino', async () => {
    fs.mkdirSync(P('d'));
    fs.writeFileSync(P('d/f'), '');
    fs.mkdirSync(P('d/s'));
    fs.symlinkSync('f', P('d/l'));
    sys.mknodat(AT_FDCWD, B(P('d/p')), S_IFIFO | 0o600, 0n);
    const d = await look('d');
    const o = await pfs.opendir(ctx, d.nodeid, 0);
    const got: Record<string, [number, bigint]> = {};
    await pfs.readdir(ctx, d.nodeid, o.fh, 0n, 4096, (e) => {
      got[e.name.toString()] = [e.type, e.ino];
      return true;
    });
    const ino = (n: string): bigint => fs.lstatSync(P(`d/${n}`), { bigint: true }).ino;
    expect(got).toEqual({
      '.': [4, ino('.')], '..': [4, fs.statSync(root, { bigint: true }).ino],
      f: [8, ino('f')], s: [4, ino('s')], l: [10, ino('l')], p: [1, ino('p')],
    });
    await pfs.releasedir(ctx, d.nodeid, o.fh);
  });

  it('a cookie resumes on another handle, and offset 0 rewinds', async () => {
    fs.mkdirSync(P('d'));
    const names = mkNames();
    const d = await look('d');
    const h1 = await pfs.opendir(ctx, d.nodeid, 0);
    const h2 = await pfs.opendir(ctx, d.nodeid, 0);
    const first: string[] = [];
    let off = 0n;
    await pfs.readdir(ctx, d.nodeid, h1.fh, 0n, 4096, (e) => {
      if (first.length === 40) return false;
      first.push(e.name.toString());
      off = e.off;
      return true;
    });
    const rest: string[] = [];
    await pfs.readdir(ctx, d.nodeid, h2.fh, off, 4096, (e) => {
      rest.push(e.name.toString());
      return true;
    });
    expect([...first, ...rest].sort()).toEqual(['.', '..', ...names].sort());
    // h1 read to the end, then rewound
    const all: string[] = [];
    await pfs.readdir(ctx, d.nodeid, h1.fh, 0n, 4096, (e) => {
      all.push(e.name.toString());
      return true;
    });
    expect(all.sort()).toEqual(['.', '..', ...names].sort());
    await pfs.releasedir(ctx, d.nodeid, h1.fh);
    await pfs.releasedir(ctx, d.nodeid, h2.fh);
  });

  it('readdirplus in batches: entries with host attributes, one lookup per added entry', async () => {
    fs.mkdirSync(P('d'));
    const names = mkNames();
    const d = await look('d');
    const base = pfs.counters().inodes;
    const r = await listBatches(d.nodeid, 3, true);
    expect(r.names.sort()).toEqual(['.', '..', ...names].sort());
    expect(r.entries.get('.')).toBeNull();
    expect(r.entries.get('..')).toBeNull();
    // exactly one node per name: the refused lookups were undone
    expect(pfs.counters().inodes).toBe(base + N);
    for (const n of names) {
      const e = r.entries.get(n)!;
      expectHostAttr(e.attr, P(`d/${n}`));
      pfs.forget(ctx, e.nodeid, 1n);
    }
    expect(pfs.counters().inodes).toBe(base);
    expect(cap.lines.some((l) => String(l.msg).includes('forget below zero'))).toBe(false);
  });

  it('readdirplus: an entry refused by `add` gets no lookup, an accepted known one gets one more', async () => {
    fs.mkdirSync(P('d'));
    for (const n of ['a', 'b', 'c']) fs.writeFileSync(P(`d/${n}`), '');
    const d = await look('d');
    const known = await look('d/a');
    const base = pfs.counters().inodes;
    const o = await pfs.opendir(ctx, d.nodeid, 0);
    // refuse every real entry: nothing may stay counted
    const refused: bigint[] = [];
    await pfs.readdirplus(ctx, d.nodeid, o.fh, 0n, 4096, (_e, en) => {
      if (en === null) return true;
      refused.push(en.nodeid);
      return false;
    });
    expect(refused.length).toBe(1);
    expect(pfs.counters().inodes).toBe(base);
    // accept everything: 'a' now holds 2 lookups (ours + readdirplus)
    const ids = new Map<string, bigint>();
    await pfs.readdirplus(ctx, d.nodeid, o.fh, 0n, 4096, (e, en) => {
      if (en) ids.set(e.name.toString(), en.nodeid);
      return true;
    });
    expect(ids.get('a')).toBe(known.nodeid);
    pfs.forget(ctx, known.nodeid, 1n);
    expect((await pfs.getattr(ctx, known.nodeid)).attr.size).toBe(0n);
    const before = pfs.counters().inodes;
    pfs.forget(ctx, known.nodeid, 1n);
    expect(pfs.counters().inodes).toBe(before - 1); // both lookups dropped: it left memory
    expect(cap.lines.some((l) => String(l.msg).includes('forget below zero'))).toBe(false);
    await pfs.releasedir(ctx, d.nodeid, o.fh);
  });

  it('opendir on a file is ENOTDIR; releasedir ends the handle; fsyncdir works', async () => {
    fs.writeFileSync(P('f'), '');
    expect(await errnoOf(pfs.opendir(ctx, (await look('f')).nodeid, 0))).toBe('ENOTDIR');
    const o = await pfs.opendir(ctx, 1n, 0);
    await pfs.fsyncdir(ctx, 1n, o.fh, false);
    await pfs.fsyncdir(ctx, 1n, o.fh, true);
    await pfs.releasedir(ctx, 1n, o.fh);
    expect(await errnoOf(pfs.readdir(ctx, 1n, o.fh, 0n, 4096, () => true))).toBe('EBADF');
    expect(await errnoOf(pfs.releasedir(ctx, 1n, o.fh))).toBe('EBADF');
  });

  it('a directory of 5,000 entries through a tiny fd budget: complete and exactly once', async () => {
    await remakeFs({ fdBudget: 4 });
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: false });
    fs.mkdirSync(P('d'));
    for (let i = 0; i < 5000; i++) fs.closeSync(fs.openSync(P(`d/${i}`), 'w'));
    const d = await look('d');
    const r = await listBatches(d.nodeid, 97, true);
    expect(r.names.length).toBe(5002);
    expect(new Set(r.names).size).toBe(5002);
    expect(pfs.counters().fds).toBeLessThanOrEqual(4 + 2);
    expect(pfs.counters().evictions).toBeGreaterThan(0);
  });
});
