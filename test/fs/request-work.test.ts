/**
 * What a request of the core costs beyond its answer: the MACs and syscalls it makes, counted
 * (counters().seals, spies on the addon), never timed. Each case would fail if the work came back.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeState } from '../../src/fs/export-table.js';
import { Sealer } from '../../src/handle/seal.js';
import { O_CREAT, O_EXCL, O_WRONLY } from '../../src/sys/constants.js';
import { B, ctx, makeFs, useCleanup } from '../helpers/fs-fixture.js';

const { cores, dir } = useCleanup();

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
    for (let i = 0; i < 10; i++) ids.push((await pfs.lookup(ctx, 1n, B(`f${i}`))).nodeid);
    const c = await pfs.create(ctx, 1n, B('new'), 0o100644, O_WRONLY | O_CREAT | O_EXCL, 0);
    await pfs.release(ctx, c.entry.nodeid, c.open.fh, O_WRONLY, 0n, false);
    const d = await pfs.mkdir(ctx, 1n, B('d'), 0o755, 0);
    expect(pfs.counters().seals).toBe(before);
    // forgotten: the records stay in this process (the export table), still unsealed
    for (const id of [...ids, c.entry.nodeid]) pfs.forget(ctx, id, 1n);
    expect(pfs.counters().inodes).toBe(2); // the root and d
    expect(pfs.counters().seals).toBe(before);
    // a record the process made itself brings its inode back without a MAC (LOOKUP "." of a client handle)
    const back = await pfs.lookup(ctx, ids[3]!, B('.'));
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
    for (let i = 0; i < 5; i++) await pfs.lookup(ctx, 1n, B(`f${i}`));
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
