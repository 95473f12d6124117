/**
 * What a request of the core costs beyond its answer: the MACs and syscalls it makes, counted
 * (counters().seals, spies on the addon), never timed. Each case would fail if the work came back.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeState } from '../../src/fs/export-table.js';
import { Sealer } from '../../src/handle/seal.js';
import { O_CREAT, O_EXCL, O_PATH, O_WRONLY } from '../../src/sys/syscalls.js';
import { B, ctx, makeFs, useCleanup } from '../helpers/fs-fixture.js';
import { found } from '../helpers/errno.js';

const { cores, dir } = useCleanup();

// the addon's functions cannot be spied on (non-configurable): every importer of syscalls.js gets a
// `sys` that records the calls of the bindings in `trace.record` and lets a test wrap one
const trace = vi.hoisted(() => ({
  record: new Set<string>(),
  calls: [] as { fn: string; args: unknown[] }[],
  wrap: {} as Record<string, (real: (...a: unknown[]) => unknown, ...args: unknown[]) => unknown>,
}));
vi.mock('../../src/sys/syscalls.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../../src/sys/syscalls.js')>();
  const real = orig.sys as unknown as Record<string, unknown>;
  // an empty target: the addon's own properties are non-configurable, which a proxy of it must return as they are
  const sys = new Proxy({}, {
    get(_t, k: string) {
      const v = real[k];
      if (typeof v !== 'function') return v;
      const f = (v as (...a: unknown[]) => unknown).bind(real);
      return (...args: unknown[]) => {
        if (trace.record.has(k)) trace.calls.push({ fn: k, args });
        const w = trace.wrap[k];
        return w ? w(f, ...args) : f(...args);
      };
    },
  });
  return { ...orig, sys };
});
const callsOf = (fn: string): unknown[][] => trace.calls.filter((c) => c.fn === fn).map((c) => c.args);
afterEach(() => {
  trace.record.clear();
  trace.calls.length = 0;
  trace.wrap = {};
});

function core(root: string, over: Parameters<typeof makeFs>[1] = {}) {
  const m = makeFs(root, over);
  cores.push(m.pfs);
  return m.pfs;
}

describe('seals', () => {
  it('a new inode is not sealed while it stays in memory; its record is sealed once, when it leaves (a hand-over state)', async () => {
    const root = dir('hfs-work-');
    for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(root, `f${i}`), 'x');
    const pfs = core(root);
    const before = pfs.counters().seals;
    const ids: bigint[] = [];
    for (let i = 0; i < 10; i++) ids.push((found(await pfs.lookup(ctx, 1n, B(`f${i}`)))).nodeid);
    const c = await pfs.create(ctx, 1n, B('new'), 0o100644, O_WRONLY | O_CREAT | O_EXCL, 0);
    await pfs.release(ctx, c.entry.nodeid, c.open.fh, O_WRONLY, 0n, false);
    const d = await pfs.mkdir(ctx, 1n, B('d'), 0o755, 0);
    expect(pfs.counters().seals).toBe(before);
    // forgotten: the records stay in this process (the export table), still unsealed
    for (const id of [...ids, c.entry.nodeid]) pfs.forget(ctx, id, 1n);
    expect(pfs.counters().inodes).toBe(2); // the root and d
    expect(pfs.counters().seals).toBe(before);
    // a record the process made itself brings its inode back without a MAC (LOOKUP "." of a client handle)
    const back = found(await pfs.lookup(ctx, ids[3]!, B('.')));
    expect(back.nodeid).toBe(ids[3]);
    expect(pfs.counters().resurrected).toBe(1);
    expect(pfs.counters().seals).toBe(before);
    // the hand-over state: every record sealed (d, f3 in memory; 10 in the export table), plus the state's MAC
    const blob = pfs.exportState();
    expect(pfs.counters().seals - before).toBe(12 + 1);
    const st = decodeState((pfs as unknown as { s: { sealer: Sealer } }).s.sealer, blob);
    expect(st.ok).toBe(true);
    if (!st.ok) return;
    expect(st.state.records.map((r) => r.nodeid).sort()).toEqual([d.nodeid, ...ids, c.entry.nodeid].sort());
    // kept: a second state seals nothing again but its own MAC
    pfs.exportState();
    expect(pfs.counters().seals - before).toBe(12 + 2);
  });

  it('with a record stream (--supervise, --state-file) each new inode is sealed once, as its record is streamed', async () => {
    const root = dir('hfs-work-');
    for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(root, `f${i}`), 'x');
    const streamed: Buffer[] = [];
    const pfs = core(root, { onRecord: (b) => streamed.push(b) });
    const before = pfs.counters().seals;
    for (let i = 0; i < 5; i++) found(await pfs.lookup(ctx, 1n, B(`f${i}`)));
    // each one-record state: the record's seal and the state's MAC
    expect(streamed.length).toBe(5);
    expect(pfs.counters().seals - before).toBe(5 * 2);
    const sealer = (pfs as unknown as { s: { sealer: Sealer } }).s.sealer;
    for (const b of streamed) {
      const st = decodeState(sealer, b);
      expect(st.ok && st.state.records.every((r) => r.seal !== null && sealer.verify(r.handleType, r.handle, r.seal))).toBe(true);
    }
  });
});

describe('CREATE', () => {
  const isProc = (p: unknown): boolean => String(p).startsWith('/proc/');

  it('takes the new inode\'s O_PATH fd by name, not by a reopen through /proc', async () => {
    const root = dir('hfs-work-');
    const pfs = core(root);
    trace.record.add('openatTry');
    for (let i = 0; i < 5; i++) {
      const c = await pfs.create(ctx, 1n, B(`n${i}`), 0o100644, O_WRONLY | O_CREAT | O_EXCL, 0);
      expect(c.entry.attr.ino).toBe(BigInt(fs.statSync(path.join(root, `n${i}`)).ino));
      await pfs.release(ctx, c.entry.nodeid, c.open.fh, O_WRONLY, 0n, false);
    }
    const opens = callsOf('openatTry');
    expect(opens.filter(([, p]) => isProc(p)).length).toBe(0);
    expect(opens.filter(([, p, f]) => !isProc(p) && ((f as number) & O_PATH) !== 0).length).toBe(5);
    // the inode works on without its open file (its O_PATH fd is cached: no reopen)
    const e = found(await pfs.lookup(ctx, 1n, B('n0')));
    await pfs.getattr(ctx, e.nodeid);
    expect(pfs.counters().reopenByPath + pfs.counters().reopenByHandle).toBe(0);
  });

  it('another file put at the name between the create and that open: the created file is still the one adopted (through /proc)', async () => {
    const root = dir('hfs-work-');
    const pfs = core(root);
    fs.writeFileSync(path.join(root, 'other'), 'other');
    let createdIno = -1n;
    trace.record.add('openatTry');
    trace.wrap.openatTry = (real, dirfd, name, flags, mode) => {
      if (String(name) === 'new' && (flags as number) & O_PATH && createdIno < 0n) {
        createdIno = BigInt(fs.statSync(path.join(root, 'new')).ino);
        fs.renameSync(path.join(root, 'other'), path.join(root, 'new'));
      }
      return real(dirfd, name, flags, mode);
    };
    const c = await pfs.create(ctx, 1n, B('new'), 0o100644, O_WRONLY | O_CREAT | O_EXCL, 0);
    expect(createdIno).toBeGreaterThan(0n);
    expect(callsOf('openatTry').filter(([, p]) => isProc(p)).length).toBe(1);
    expect(c.entry.attr.ino).toBe(createdIno);
    expect(c.entry.attr.nlink).toBe(0); // renamed over
    await pfs.write(ctx, c.entry.nodeid, c.open.fh, 0, B('mine'), 0);
    await pfs.release(ctx, c.entry.nodeid, c.open.fh, O_WRONLY, 0n, false);
    expect(fs.readFileSync(path.join(root, 'new'), 'utf8')).toBe('other');
    // the name now reaches the other file, a node of its own
    const o = found(await pfs.lookup(ctx, 1n, B('new')));
    expect(o.nodeid).not.toBe(c.entry.nodeid);
    expect(o.attr.ino).toBe(BigInt(fs.statSync(path.join(root, 'new')).ino));
  });
});

describe('READDIRPLUS', () => {
  const N = 300;

  /**
   * Every entry of directory `nodeid` through readdirplus, about 4 KiB at a time (as the kernel
   * asks); `refused`: entries that did not fit a call (their lookup undone, looked up again by the next).
   */
  async function listPlus(pfs: ReturnType<typeof core>, nodeid: bigint): Promise<{ ids: Map<string, bigint>; refused: number }> {
    const o = await pfs.opendir(ctx, nodeid, 0);
    const ids = new Map<string, bigint>();
    let refused = 0;
    let off = 0n;
    for (let calls = 0; calls < 10_000; calls++) {
      let room = 4096;
      let taken = 0;
      await pfs.readdirplus(ctx, nodeid, o.fh, off, 4096, (e, en) => {
        room -= 150;
        if (room < 0) {
          if (en) refused++;
          return false;
        }
        taken++;
        off = e.off;
        if (en) ids.set(e.name.toString(), en.nodeid);
        return true;
      });
      if (taken === 0) break;
    }
    await pfs.releasedir(ctx, nodeid, o.fh);
    return { ids, refused };
  }

  /** O_PATH opens of the listed names (not of '..', which a reopen of an evicted directory walks) */
  const entryOpens = (): number => callsOf('openatTry').filter(([, p, f]) => ((f as number) & O_PATH) !== 0 && /^f\d+$/.test(String(p))).length;

  it('a directory listed again reaches the inodes it knows without opening them; a first listing barely tries', async () => {
    const root = dir('hfs-work-');
    fs.mkdirSync(path.join(root, 'd'));
    for (let i = 0; i < N; i++) fs.writeFileSync(path.join(root, 'd', `f${i}`), `${i}`);
    const pfs = core(root);
    const d = found(await pfs.lookup(ctx, 1n, B('d')));
    trace.record.add('openatTry');
    trace.record.add('nameToHandleAtTry');
    const { ids: first, refused } = await listPlus(pfs, d.nodeid);
    expect(first.size).toBe(N);
    expect(refused).toBeGreaterThan(0);
    // a first listing: an O_PATH open per entry (a refused one left memory: opened again by the next
    // call), and few tries by name (they found nothing known)
    expect(entryOpens()).toBe(N + refused);
    expect(callsOf('nameToHandleAtTry').length).toBeLessThan(5);
    trace.calls.length = 0;
    // listed again: the same nodes, reached by handle and statx, nothing opened
    fs.writeFileSync(path.join(root, 'd', 'f7'), 'changed on the host');
    const second = (await listPlus(pfs, d.nodeid)).ids;
    expect(second).toEqual(first);
    expect(entryOpens()).toBe(0);
    // and with the host's attributes of now
    expect((await pfs.getattr(ctx, second.get('f7')!)).attr.size).toBe(BigInt('changed on the host'.length));
    // two lookups each: two forgets make every one leave
    const base = pfs.counters().inodes;
    for (const id of second.values()) pfs.forget(ctx, id, 2n);
    expect(pfs.counters().inodes).toBe(base - N);
  });
});
