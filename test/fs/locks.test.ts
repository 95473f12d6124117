/**
 * Locks of the filesystem core: OFD locks (getlk, setlk, setlkw) and flock.
 * PassthroughFs driven through the FileSystem interface on a temp dir (../helpers/fs-fixture.ts),
 * every result compared with what the host says (fs.*Sync on the same tree, or the sys addon).
 */
import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { sys, F_RDLCK, F_UNLCK, F_WRLCK, O_RDONLY, O_RDWR, SEEK_SET } from '../../src/sys/syscalls.js';
import { errnoOf, errnoOfSync } from '../helpers/errno.js';
import { ctx, pfs, P, openFile, lock, remakeFs, useFs } from '../helpers/fs-fixture.js';

const OFFSET_MAX = 0x7fffffffffffffffn;

useFs();

function settled(p: Promise<unknown>): () => boolean {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  return () => done;
}

describe('getlk, setlk, setlkw, flock', () => {
  it('OFD semantics: a conflicting lock through a second fh is EAGAIN; getlk reports it; the host sees it', async () => {
    fs.writeFileSync(P('f'), Buffer.alloc(100));
    const a = await openFile('f');
    const b = await openFile('f');
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, 9n), false, false);
    expect(await errnoOf(pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_WRLCK, 5n, 14n), false, false))).toBe('EAGAIN');
    await pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_WRLCK, 10n, 19n), false, false);
    const g = await pfs.getlk(ctx, b.nodeid, b.fh, 2n, lock(F_RDLCK, 0n, OFFSET_MAX));
    expect([g.type, g.start, g.end]).toEqual([F_WRLCK, 0n, 9n]);
    // a's own lock does not conflict with a; b's range does
    const ga = await pfs.getlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, 9n));
    expect(ga.type).toBe(F_UNLCK);
    const gb = await pfs.getlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 15n, 15n));
    expect([gb.type, gb.start, gb.end]).toEqual([F_WRLCK, 10n, 19n]);
    // a host process's OFD lock conflicts too
    const hfd = fs.openSync(P('f'), 'r+');
    try {
      expect(errnoOfSync(() => sys.ofdSetlk(hfd, F_WRLCK, SEEK_SET, 0, 1))).toBe('EAGAIN');
      expect(errnoOfSync(() => sys.ofdSetlk(hfd, F_RDLCK, SEEK_SET, 50, 1))).toBe('OK');
      expect(await errnoOf(pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 50n, 50n), false, false))).toBe('EAGAIN');
    } finally {
      fs.closeSync(hfd);
    }
    // unlock, then b can take it; an invalid type is EINVAL
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_UNLCK, 0n, OFFSET_MAX), false, false);
    await pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_WRLCK, 0n, 9n), false, false);
    expect(await errnoOf(pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(7, 0n, 9n), false, false))).toBe('EINVAL');
  });

  it('setlkw waits and resolves after the holder unlocks', async () => {
    fs.writeFileSync(P('f'), Buffer.alloc(10));
    const a = await openFile('f');
    const b = await openFile('f');
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, OFFSET_MAX), false, false);
    const w = pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_WRLCK, 0n, OFFSET_MAX), true, false);
    const done = settled(w);
    await sleep(150);
    expect(done()).toBe(false);
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_UNLCK, 0n, OFFSET_MAX), false, false);
    await w;
    expect(await errnoOf(pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_RDLCK, 0n, 0n), false, false))).toBe('EAGAIN');
  });

  it('flush drops the OFD locks taken through the fh; release too', async () => {
    fs.writeFileSync(P('f'), Buffer.alloc(10));
    const a = await openFile('f');
    const b = await openFile('f');
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, OFFSET_MAX), false, false);
    await pfs.flush(ctx, a.nodeid, a.fh, 1n);
    await pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_WRLCK, 0n, OFFSET_MAX), false, false);
    expect(await errnoOf(pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, 0n), false, false))).toBe('EAGAIN');
    await pfs.release(ctx, b.nodeid, b.fh, O_RDWR, 2n, false);
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, 0n), false, false);
  });

  it('flock via setlk(isFlock): EAGAIN when contended, waits with sleep, released by release', async () => {
    fs.writeFileSync(P('f'), '');
    const a = await openFile('f');
    const b = await openFile('f');
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, OFFSET_MAX), false, true);
    expect(await errnoOf(pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_RDLCK, 0n, OFFSET_MAX), false, true))).toBe('EAGAIN');
    // the host sees the flock
    const hfd = fs.openSync(P('f'), 'r');
    try {
      expect(errnoOfSync(() => sys.flock(hfd, 1 /* LOCK_SH */ | 4 /* LOCK_NB */))).toBe('EAGAIN');
    } finally {
      fs.closeSync(hfd);
    }
    const w = pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_WRLCK, 0n, OFFSET_MAX), true, true);
    const done = settled(w);
    await sleep(150);
    expect(done()).toBe(false);
    await pfs.release(ctx, a.nodeid, a.fh, O_RDWR, 1n, true);
    await w;
    // flock and OFD locks are independent
    const c = await openFile('f');
    await pfs.setlk(ctx, c.nodeid, c.fh, 3n, lock(F_WRLCK, 0n, OFFSET_MAX), false, false);
    await pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_UNLCK, 0n, OFFSET_MAX), false, true);
    await pfs.setlk(ctx, c.nodeid, c.fh, 3n, lock(F_WRLCK, 0n, OFFSET_MAX), false, true);
  });

  it('a locked fh keeps its fd through fd-cache pressure', async () => {
    await remakeFs({ fdBudget: 4 });
    fs.writeFileSync(P('f'), Buffer.alloc(10));
    const a = await openFile('f');
    const b = await openFile('f');
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, OFFSET_MAX), false, false);
    for (let i = 0; i < 20; i++) {
      fs.writeFileSync(P(`x${i}`), '');
      const o = await openFile(`x${i}`, O_RDONLY);
      await pfs.read(ctx, o.nodeid, o.fh, 0, 1);
    }
    expect(await errnoOf(pfs.setlk(ctx, b.nodeid, b.fh, 2n, lock(F_WRLCK, 0n, 0n), false, false))).toBe('EAGAIN');
  });
});
