/**
 * SharedFileTable (src/fs/shared-files.ts): the owner's publish / mark / withdraw and any thread's
 * borrow / fileAt / release, on one thread and raced against a worker thread; then the
 * filesystem's use of it (open-files.ts publishes and withdraws, the fd cache does not evict a
 * borrowed open file's fd, locks.ts marks lock owners).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { SHARED_LOCK_OWNERS, SharedFileTable, SharedRemovalGate, type SharedFile } from '../../src/fs/shared-files.js';
import { DECLINE, E, toErrno } from '../../src/errors.js';
import { newFsCounters } from '../../src/fs/services.js';
import { threadFs } from '../../src/fs/thread-fs.js';
import { F_WRLCK, O_APPEND, O_RDONLY, O_RDWR, S_IFDIR, S_IFLNK, S_IFREG } from '../../src/sys/syscalls.js';
import { waitFor } from '../helpers/poll.js';
import { B, ctx, lock, makeFs, useCleanup, walk } from '../helpers/fs-fixture.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const distTable = path.resolve(here, '../../dist/fs/shared-files.js');

const file = (): SharedFile => ({ fd: -1, flags: 0, dev: 0, marks: 0 });
/** `fh`'s entry as a borrower sees it (borrowed and given back), or null when it is not lent. */
function peek(t: SharedFileTable, fh: bigint, nodeid: bigint): SharedFile | null {
  const slot = t.borrow(fh, nodeid);
  if (slot < 0) return null;
  try {
    return t.fileAt(slot, file());
  } finally {
    t.release(slot);
  }
}

describe('SharedFileTable on one thread', () => {
  it('capacity is a power of two, at least 2; a buffer of another size is refused', () => {
    expect(SharedFileTable.create(0).capacity).toBe(2);
    expect(SharedFileTable.create(1).capacity).toBe(2);
    expect(SharedFileTable.create(5).capacity).toBe(8);
    expect(SharedFileTable.create(8).capacity).toBe(8);
    expect(SharedFileTable.create(1000).capacity).toBe(1024);
    expect(SharedFileTable.create(8).buffer.byteLength).toBe(8 * 9 * 4);
    expect(() => SharedFileTable.attach(new SharedArrayBuffer(3 * 9 * 4))).toThrow(RangeError);
    expect(() => SharedFileTable.attach(new SharedArrayBuffer(9 * 4))).toThrow(RangeError);
    expect(() => SharedFileTable.attach(new SharedArrayBuffer(4 * 9 * 4 + 4))).toThrow(RangeError);
  });

  it('publish, borrow, fileAt, release: every field, 64-bit fh and node id, counted borrows', () => {
    const t = SharedFileTable.create(16);
    const fh = 0x1_0000_0005n;
    const nodeid = 0xffff_0000_0000_0032n;
    expect(t.publish(fh, nodeid, 42, O_RDWR | O_APPEND, 0xffff_fff0, SHARED_LOCK_OWNERS)).toBe(true);
    // the same low word, another high word: another fh
    expect(t.publish(5n, 50n, 43, O_RDONLY, 7)).toBe(true);
    const a = t.borrow(fh, nodeid);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(t.fileAt(a, file())).toEqual({ fd: 42, flags: O_RDWR | O_APPEND, dev: 0xffff_fff0, marks: SHARED_LOCK_OWNERS });
    expect(t.borrowers(fh)).toBe(1);
    const b = t.borrow(fh, nodeid);
    expect(b).toBe(a);
    expect(t.borrowers(fh)).toBe(2);
    expect(t.borrowers(5n)).toBe(0);
    expect(peek(t, 5n, 50n)).toEqual({ fd: 43, flags: O_RDONLY, dev: 7, marks: 0 });
    t.release(a);
    expect(t.borrowers(fh)).toBe(1);
    t.release(b);
    expect(t.borrowers(fh)).toBe(0);
    // fileAt fills and returns the object it is given
    const into = file();
    const s = t.borrow(5n, 50n);
    expect(t.fileAt(s, into)).toBe(into);
    t.release(s);
  });

  it('a node id that is not the entry\'s (either word) or an fh never published is not lent', () => {
    const t = SharedFileTable.create(8);
    t.publish(9n, 0x1_0000_0001n, 3, 0, 0);
    expect(t.borrow(9n, 0x1_0000_0002n)).toBe(-1);
    expect(t.borrow(9n, 0x2_0000_0001n)).toBe(-1);
    expect(t.borrow(9n, 1n)).toBe(-1);
    expect(t.borrow(10n, 0x1_0000_0001n)).toBe(-1);
    expect(t.borrow(9n + (1n << 32n), 0x1_0000_0001n)).toBe(-1);
    // a refused borrow leaves no count behind: the entry can be withdrawn
    expect(t.borrowers(9n)).toBe(0);
    expect(t.withdraw(9n)).toBe(true);
    expect(t.borrowers(9n)).toBe(0);
  });

  it('withdraw: true for an idle or unknown fh; false while borrowed; closing refuses new borrows; true after the last release', () => {
    const t = SharedFileTable.create(8);
    expect(t.withdraw(77n)).toBe(true);
    expect(t.withdraw(77n, true)).toBe(true);
    t.publish(1n, 10n, 5, 0, 0);
    expect(t.withdraw(1n)).toBe(true);
    expect(t.borrow(1n, 10n)).toBe(-1);

    t.publish(1n, 10n, 5, 0, 0);
    const a = t.borrow(1n, 10n);
    expect(t.withdraw(1n)).toBe(false);
    // not closing: still lent
    const b = t.borrow(1n, 10n);
    expect(b).toBe(a);
    expect(t.borrowers(1n)).toBe(2);
    expect(t.withdraw(1n, true)).toBe(false);
    expect(t.borrow(1n, 10n)).toBe(-1);
    expect(t.borrowers(1n)).toBe(2);
    // the holders still read their entry
    expect(t.fileAt(a, file()).fd).toBe(5);
    t.release(a);
    expect(t.withdraw(1n, true)).toBe(false);
    expect(t.borrow(1n, 10n)).toBe(-1);
    t.release(b);
    expect(t.borrowers(1n)).toBe(0);
    expect(t.withdraw(1n, true)).toBe(true);
    expect(t.borrow(1n, 10n)).toBe(-1);
    // published again after a closing withdraw: lent again
    expect(t.publish(1n, 10n, 6, 0, 0)).toBe(true);
    expect(peek(t, 1n, 10n)?.fd).toBe(6);
  });

  it('republishing the same fd keeps the entry (and its borrows) and sets the marks; another fd replaces it once idle', () => {
    const t = SharedFileTable.create(8);
    t.publish(2n, 20n, 7, O_RDWR, 1);
    const s = t.borrow(2n, 20n);
    expect(t.publish(2n, 20n, 7, O_RDWR, 1, SHARED_LOCK_OWNERS)).toBe(true);
    expect(t.borrowers(2n)).toBe(1);
    expect(t.fileAt(s, file())).toEqual({ fd: 7, flags: O_RDWR, dev: 1, marks: SHARED_LOCK_OWNERS });
    // a replacement waits for the borrower: the old fd stays
    expect(t.publish(2n, 20n, 8, O_RDONLY, 2)).toBe(false);
    expect(t.fileAt(s, file()).fd).toBe(7);
    t.release(s);
    expect(peek(t, 2n, 20n)?.fd).toBe(7);
    expect(t.publish(2n, 20n, 8, O_RDONLY, 2)).toBe(true);
    expect(peek(t, 2n, 20n)).toEqual({ fd: 8, flags: O_RDONLY, dev: 2, marks: 0 });
    // one entry for the fh: one withdraw and it is gone
    expect(t.withdraw(2n)).toBe(true);
    expect(t.borrow(2n, 20n)).toBe(-1);
  });

  it('mark sets and clears one bit of a published entry; an unknown fh is left alone', () => {
    const t = SharedFileTable.create(8);
    t.publish(3n, 30n, 9, 0, 0, 4);
    t.mark(3n, SHARED_LOCK_OWNERS, true);
    expect(peek(t, 3n, 30n)?.marks).toBe(4 | SHARED_LOCK_OWNERS);
    t.mark(3n, SHARED_LOCK_OWNERS, true);
    expect(peek(t, 3n, 30n)?.marks).toBe(4 | SHARED_LOCK_OWNERS);
    t.mark(3n, SHARED_LOCK_OWNERS, false);
    expect(peek(t, 3n, 30n)?.marks).toBe(4);
    t.mark(99n, SHARED_LOCK_OWNERS, true);
    expect(t.borrow(99n, 30n)).toBe(-1);
    expect(t.withdraw(3n)).toBe(true);
  });

  it('collisions probe on; a withdrawn slot is passed by lookups and reused; a full table refuses a publish', () => {
    const t = SharedFileTable.create(4);
    // 1, 5, 9 and 13 all start at slot 1
    for (const fh of [1n, 5n, 9n]) expect(t.publish(fh, fh * 10n, Number(fh), 0, 0)).toBe(true);
    const slot = (fh: bigint): number => {
      const s = t.borrow(fh, fh * 10n);
      if (s >= 0) t.release(s);
      return s;
    };
    expect([slot(1n), slot(5n), slot(9n)]).toEqual([1, 2, 3]);
    expect(t.withdraw(5n)).toBe(true);
    // 9 is found past the withdrawn slot
    expect(peek(t, 9n, 90n)?.fd).toBe(9);
    expect(slot(5n)).toBe(-1);
    // 13 takes the withdrawn slot on its path
    expect(t.publish(13n, 130n, 13, 0, 0)).toBe(true);
    expect(slot(13n)).toBe(2);
    // 0 wraps to slot 0; the table is full
    expect(t.publish(0n, 0n, 100, 0, 0)).toBe(true);
    expect(slot(0n)).toBe(0);
    expect(t.publish(4n, 40n, 4, 0, 0)).toBe(false);
    expect(t.publish(6n, 60n, 6, 0, 0)).toBe(false);
    // lookups of an absent fh in a full table end
    expect(t.borrow(17n, 170n)).toBe(-1);
    expect(t.withdraw(17n)).toBe(true);
    // every entry is still itself; republishing one in place needs no room
    expect([1n, 9n, 13n].map((fh) => peek(t, fh, fh * 10n)?.fd)).toEqual([1, 9, 13]);
    expect(peek(t, 0n, 0n)?.fd).toBe(100);
    expect(t.publish(9n, 90n, 9, 0, 0, SHARED_LOCK_OWNERS)).toBe(true);
    // a withdraw makes room, at the freed slot
    expect(t.withdraw(1n)).toBe(true);
    expect(t.publish(4n, 40n, 4, 0, 0)).toBe(true);
    expect(slot(4n)).toBe(1);
    // every slot withdrawn (no empty one left to end a probe): lookups still end, publishes reuse them
    for (const fh of [0n, 4n, 9n, 13n]) expect(t.withdraw(fh)).toBe(true);
    expect(t.borrow(9n, 90n)).toBe(-1);
    expect(t.publish(21n, 210n, 21, 0, 0)).toBe(true);
    expect(slot(21n)).toBe(1);
  });

  it('attach: another view of the same buffer sees and counts the same entries', () => {
    const t = SharedFileTable.create(8);
    const other = SharedFileTable.attach(t.buffer);
    expect(other.capacity).toBe(8);
    t.publish(6n, 60n, 11, O_RDWR, 3);
    const s = other.borrow(6n, 60n);
    expect(other.fileAt(s, file())).toEqual({ fd: 11, flags: O_RDWR, dev: 3, marks: 0 });
    expect(t.borrowers(6n)).toBe(1);
    expect(t.withdraw(6n)).toBe(false);
    other.release(s);
    expect(t.withdraw(6n)).toBe(true);
    expect(other.borrow(6n, 60n)).toBe(-1);
  });
});

describe('SharedFileTable raced by a worker thread', () => {
  it('the borrower only ever holds the entry published for its fh; a withdraw never succeeds under it', async () => {
    expect(fs.existsSync(distTable), `${distTable} (npm run build)`).toBe(true);
    // fhs that collide (3, 11, 19, 27 start at slot 3 of 8; 4 and 12 at slot 4, taken by them)
    const fhs = [3, 11, 19, 27, 4, 12];
    const nodeOffset = 1000;
    const t = SharedFileTable.create(8);
    const sab = (n: number): SharedArrayBuffer => new SharedArrayBuffer(n * 4);
    const bufs = { ctl: sab(2), expected: sab(fhs.length), pending: sab(fhs.length), holding: sab(fhs.length) };
    const ctl = new Int32Array(bufs.ctl);
    const expected = new Int32Array(bufs.expected);
    const pending = new Int32Array(bufs.pending);
    const holding = new Int32Array(bufs.holding);
    const w = new Worker(new URL('./fixtures/shared-files-borrower.mjs', import.meta.url), {
      workerData: { module: pathToFileURL(distTable).href, table: t.buffer, fhs, nodeOffset, ...bufs },
    });
    const result = new Promise<{ borrows: number; wrongNodeBorrows: number; errors: number; first: string | null }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    try {
      await waitFor('the borrower', () => (Atomics.load(ctl, 1) === 1 ? true : null), 10_000, 5);
      const errors: string[] = [];
      const published = fhs.map(() => false);
      const closing = fhs.map(() => false);
      const stats = { published: 0, replaced: 0, withdrawn: 0, refusedWhileBorrowed: 0, closingRefusals: 0 };
      let epoch = 0;
      let seed = 12345;
      const rnd = (n: number): number => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return (seed >>> 8) % n;
      };
      const notHeld = (i: number, what: string): void => {
        if (Atomics.load(holding, i) !== 0) errors.push(`fh ${fhs[i]}: ${what} succeeded while the borrower held it`);
      };
      const deadline = Date.now() + 2500;
      for (let it = 0; it < 1_000_000 && ((it & 255) !== 0 || Date.now() < deadline); it++) {
        const i = rnd(fhs.length);
        const fh = BigInt(fhs[i]!);
        const nodeid = fh + BigInt(nodeOffset);
        if (closing[i]) {
          // the owner of a released fh tries again until the borrower gives it back
          if (t.withdraw(fh, true)) {
            notHeld(i, 'closing withdraw');
            closing[i] = published[i] = false;
          } else {
            stats.closingRefusals++;
            if (t.borrow(fh, nodeid) !== -1) errors.push(`fh ${fh}: lent while closing`);
          }
          continue;
        }
        const fd = ((i + 1) << 20) | (++epoch & 0xfffff);
        if (!published[i]) {
          Atomics.store(pending, i, fd);
          Atomics.store(expected, i, fd);
          if (!t.publish(fh, nodeid, fd, (i + 1) * 7, fd & 0xfffff)) errors.push(`fh ${fh}: publish refused with room left`);
          published[i] = true;
          stats.published++;
          continue;
        }
        const action = rnd(3);
        if (action === 0) {
          Atomics.store(pending, i, fd);
          if (t.publish(fh, nodeid, fd, (i + 1) * 7, fd & 0xfffff)) {
            Atomics.store(expected, i, fd);
            stats.replaced++;
          } else {
            Atomics.store(pending, i, Atomics.load(expected, i));
            stats.refusedWhileBorrowed++;
          }
        } else if (t.withdraw(fh, action === 2)) {
          notHeld(i, 'withdraw');
          published[i] = false;
          stats.withdrawn++;
        } else {
          stats.refusedWhileBorrowed++;
          if (action === 2) closing[i] = true;
        }
      }
      Atomics.store(ctl, 0, 1);
      const r = await result;
      expect(errors.slice(0, 5)).toEqual([]);
      expect(r.first).toBeNull();
      expect(r.errors).toBe(0);
      expect(r.wrongNodeBorrows).toBe(0);
      // the race happened: many borrows, and the owner met a borrower
      expect(r.borrows).toBeGreaterThan(1000);
      expect(stats.refusedWhileBorrowed).toBeGreaterThan(0);
      expect(stats.withdrawn + stats.replaced).toBeGreaterThan(1000);
      // the borrower is gone: nothing is borrowed, everything can be withdrawn
      for (const fh of fhs) {
        expect(t.borrowers(BigInt(fh))).toBe(0);
        expect(t.withdraw(BigInt(fh), true)).toBe(true);
      }
    } finally {
      Atomics.store(ctl, 0, 1);
      await w.terminate();
    }
  }, 30_000);
});

describe('the filesystem publishes open files and inodes (PassthroughFs with sharedFds)', () => {
  const { cores, dir } = useCleanup();

  async function setup(files: number) {
    const root = dir('hfs-shared-');
    for (let i = 0; i < files; i++) fs.writeFileSync(path.join(root, `f${i}`), `c${i}`);
    fs.mkdirSync(path.join(root, 'd'));
    const table = SharedFileTable.create(64);
    const inodes = SharedFileTable.create(64);
    const { pfs } = makeFs(root, { sharedFds: { files: table, inodes, removals: SharedRemovalGate.create() }, fdBudget: 8 });
    cores.push(pfs);
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: false, submounts: false });
    const open = async (rel: string, flags = O_RDWR) => {
      const e = await walk(pfs, rel);
      return { nodeid: e.nodeid, fh: (await pfs.open(ctx, e.nodeid, flags)).fh };
    };
    /** Open (and keep open) f<from>..f<files-1>: the fd cache must evict to make room. */
    const pressure = async (from: number) => {
      for (let i = from; i < files; i++) await open(`f${i}`);
    };
    return { root, table, inodes, pfs, open, pressure };
  }

  const fdPath = (fd: number): string | null => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return null;
    }
  };

  it('an open file is published with its host flags; a directory is not; release withdraws it', async () => {
    const { root, table, pfs, open } = await setup(1);
    const f = await open('f0', O_RDWR | O_APPEND);
    const got = peek(table, f.fh, f.nodeid);
    expect(got).not.toBeNull();
    expect(fdPath(got!.fd)).toBe(path.join(root, 'f0'));
    expect(got!.flags & O_APPEND).toBe(O_APPEND);
    expect(got!.marks).toBe(0);
    expect(peek(table, f.fh, f.nodeid + 1n)).toBeNull();
    const d = await walk(pfs, 'd');
    const dh = await pfs.opendir(ctx, d.nodeid, O_RDONLY);
    expect(peek(table, dh.fh, d.nodeid)).toBeNull();
    await pfs.releasedir(ctx, d.nodeid, dh.fh);
    await pfs.release(ctx, f.nodeid, f.fh, O_RDWR, 0n, false);
    expect(peek(table, f.fh, f.nodeid)).toBeNull();
    expect(fdPath(got!.fd)).not.toBe(path.join(root, 'f0'));
  });

  it('a POSIX lock marks the entry SHARED_LOCK_OWNERS (a flock does not)', async () => {
    const { table, pfs, open } = await setup(2);
    const a = await open('f0');
    await pfs.setlk(ctx, a.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, 10n), false, true);
    expect(peek(table, a.fh, a.nodeid)?.marks).toBe(0);
    const b = await open('f1');
    await pfs.setlk(ctx, b.nodeid, b.fh, 7n, lock(F_WRLCK, 0n, 10n), false, false);
    expect(peek(table, b.fh, b.nodeid)?.marks).toBe(SHARED_LOCK_OWNERS);
  });

  it('an open file\'s fd another thread borrows is not evicted; once given back it is withdrawn, evicted and reopened', async () => {
    const { root, table, pfs, open, pressure } = await setup(20);
    const f = await open('f0');
    const slot = table.borrow(f.fh, f.nodeid);
    const fd = table.fileAt(slot, file()).fd;
    const evictions = pfs.counters().evictions;
    await pressure(1);
    expect(pfs.counters().evictions).toBeGreaterThan(evictions);
    expect(fdPath(fd)).toBe(path.join(root, 'f0'));
    expect(table.borrowers(f.fh)).toBe(1);
    table.release(slot);
    // the next round of pressure may take it: it is withdrawn first
    await pressure(1);
    expect(peek(table, f.fh, f.nodeid)).toBeNull();
    // the owner's next use reopens and publishes it again
    expect((await pfs.read(ctx, f.nodeid, f.fh, 0, 10)).toString()).toBe('c0');
    const again = peek(table, f.fh, f.nodeid);
    expect(again).not.toBeNull();
    expect(fdPath(again!.fd)).toBe(path.join(root, 'f0'));
  });

  it('a file released while another thread borrows it keeps its fd, under fd pressure too, until given back', async () => {
    const { root, table, pfs, open, pressure } = await setup(20);
    const f = await open('f0');
    const slot = table.borrow(f.fh, f.nodeid);
    const fd = table.fileAt(slot, file()).fd;
    await pfs.release(ctx, f.nodeid, f.fh, O_RDWR, 0n, false);
    // closing: no new borrower
    expect(table.borrow(f.fh, f.nodeid)).toBe(-1);
    expect(fdPath(fd)).toBe(path.join(root, 'f0'));
    // the cache needs room: the released file's fd must not be the one it closes
    const evictions = pfs.counters().evictions;
    await pressure(1);
    expect(pfs.counters().evictions).toBeGreaterThan(evictions);
    expect(fdPath(fd)).toBe(path.join(root, 'f0'));
    await new Promise((r) => setTimeout(r, 20));
    expect(fdPath(fd)).toBe(path.join(root, 'f0'));
    const fds = pfs.counters().fds;
    table.release(slot);
    // the owner withdraws it and closes the fd within a few retries
    await waitFor('the fd closed', () => (pfs.counters().fds === fds - 1 ? true : null), 5_000, 5);
    expect(table.borrowers(f.fh)).toBe(0);
    expect(fdPath(fd)).not.toBe(path.join(root, 'f0'));
  });

  it('an inode\'s O_PATH fd is published by node id with its type (the root\'s too); a borrowed one outlives eviction and the inode\'s drop until given back', async () => {
    const { root, inodes, pfs, pressure } = await setup(20);
    // the root: published for life
    const r = peek(inodes, 1n, 1n);
    expect(r).not.toBeNull();
    expect(r!.flags).toBe(S_IFDIR);
    fs.symlinkSync('f0', path.join(root, 'l'));
    const l = await walk(pfs, 'l');
    expect(peek(inodes, l.nodeid, l.nodeid)?.flags).toBe(S_IFLNK);
    const f = await walk(pfs, 'f0');
    const got = peek(inodes, f.nodeid, f.nodeid);
    expect(got?.flags).toBe(S_IFREG);
    expect(fdPath(got!.fd)).toBe(path.join(root, 'f0'));
    const slot = inodes.borrow(f.nodeid, f.nodeid);
    const fd = inodes.fileAt(slot, file()).fd;
    // the client forgets it: the inode leaves memory, its fd must stay open while borrowed
    const fds = pfs.counters().fds;
    pfs.forget(ctx, f.nodeid, 1n);
    expect(inodes.borrow(f.nodeid, f.nodeid)).toBe(-1);
    await pressure(1);
    await new Promise((res) => setTimeout(res, 20));
    expect(fdPath(fd)).toBe(path.join(root, 'f0'));
    inodes.release(slot);
    await waitFor('the fd closed', () => (fdPath(fd) !== path.join(root, 'f0') ? true : null), 5_000, 5);
    expect(inodes.borrowers(f.nodeid)).toBe(0);
    expect(pfs.counters().fds).toBeLessThanOrEqual(fds + 20);
  });
});

describe('SharedRemovalGate', () => {
  it('the owner starts watching only once a removal in flight on another thread is over; then removals are refused', async () => {
    expect(fs.existsSync(distTable), `${distTable} (npm run build)`).toBe(true);
    const gate = SharedRemovalGate.create();
    const ctl = new Int32Array(new SharedArrayBuffer(12));
    const w = new Worker(new URL('./fixtures/removal-gate-remover.mjs', import.meta.url), {
      workerData: { module: pathToFileURL(distTable).href, gate: gate.buffer, ctl: ctl.buffer },
    });
    const said = new Promise<string>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    try {
      await waitFor('the removal', () => (Atomics.load(ctl, 0) === 1 ? true : null), 10_000, 5);
      expect(Atomics.load(ctl, 1)).toBe(0);
      gate.watch(true);
      // the worker held its removal for 300 ms after entering: watch() waited for it
      expect(Atomics.load(ctl, 1)).toBe(1);
      expect(gate.watching).toBe(true);
      expect(gate.enter()).toBe(false);
      expect(await said).toBe('left');
      gate.watch(false);
      expect(gate.enter()).toBe(true);
      gate.leave();
    } finally {
      await w.terminate();
    }
  }, 30_000);
});

describe('names removed by another serving thread (threadFs beside PassthroughFs)', () => {
  const { cores, dir } = useCleanup();

  /** The share is <tmp>/share; <tmp>/outside is beside it. */
  async function setup() {
    const top = dir('hfs-removals-');
    const root = path.join(top, 'share');
    const outside = path.join(top, 'outside');
    fs.mkdirSync(path.join(root, 'd'), { recursive: true });
    fs.mkdirSync(outside);
    const tables = { files: SharedFileTable.create(64), inodes: SharedFileTable.create(64), removals: SharedRemovalGate.create() };
    const { pfs } = makeFs(root, { sharedFds: tables, fdBudget: 32 });
    cores.push(pfs);
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: false, submounts: false });
    const t = threadFs(tables, newFsCounters(), { attrTimeoutMs: 1000, rootPath: Buffer.from(fs.realpathSync(root)), plainXattrs: true, rootMount: 0n, handleFlags: 0 });
    return { root, outside, tables, pfs, t };
  }

  /** What the thread answers: 'declined', an errno, or 0. */
  async function answer(p: Promise<unknown>): Promise<'declined' | number> {
    try {
      await p;
      return 0;
    } catch (e) {
      return e === DECLINE ? 'declined' : toErrno(e);
    }
  }

  it('unlinks and rmdirs on the host while the owner keeps no books, with the owner\'s errors; an open file or a file with two names hands them over', async () => {
    const { root, tables, pfs, t } = await setup();
    const at = (n: string): string => path.join(root, 'd', n);
    for (const n of ['a', 'b', 'c', 'f']) fs.writeFileSync(at(n), n);
    fs.mkdirSync(at('e'));
    fs.mkdirSync(at('g'));
    fs.writeFileSync(path.join(at('g'), 'inside'), 'x');
    const d = await walk(pfs, 'd');
    expect(tables.removals.watching).toBe(false);

    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('a')))).toBe(0);
    expect(fs.existsSync(at('a'))).toBe(false);
    expect(await answer(t.fs.rmdir(ctx, d.nodeid, B('e')))).toBe(0);
    expect(fs.existsSync(at('e'))).toBe(false);
    // the host's answers, as the owner gives them
    expect(await answer(t.fs.rmdir(ctx, d.nodeid, B('g')))).toBe(E.ENOTEMPTY);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('g')))).toBe(E.EISDIR);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('none')))).toBe(E.ENOENT);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('..')))).toBe(E.EINVAL);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('x/y')))).toBe(E.EINVAL);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, Buffer.alloc(256, 0x61)))).toBe(E.ENAMETOOLONG);
    expect(t.counters.removals).toBe(5);

    // an open file: the owner must see every removal (the victim may be it, and live on unlinked)
    const f = await walk(pfs, 'd/f');
    const { fh } = await pfs.open(ctx, f.nodeid, O_RDWR);
    expect(tables.removals.watching).toBe(true);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('b')))).toBe('declined');
    expect(fs.existsSync(at('b'))).toBe(true);
    await pfs.release(ctx, f.nodeid, fh, O_RDWR, 0n, false);
    expect(tables.removals.watching).toBe(false);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('b')))).toBe(0);
    expect(fs.existsSync(at('b'))).toBe(false);

    // a file known with two names: the owner moves its parent link when one goes
    fs.linkSync(at('c'), at('c2'));
    await walk(pfs, 'd/c');
    expect(tables.removals.watching).toBe(true);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('c')))).toBe('declined');
    await pfs.unlink(ctx, d.nodeid, B('c'));
    expect(tables.removals.watching).toBe(false);
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('c2')))).toBe(0);
    expect(fs.readdirSync(path.join(root, 'd')).sort()).toEqual(['f', 'g']);

    // a parent the owner has not published
    expect(await answer(t.fs.unlink(ctx, 999n, B('f')))).toBe('declined');
    expect(fs.existsSync(at('f'))).toBe(true);
  });

  it('a parent the host moved out of the share: the thread removes nothing outside', async () => {
    const { root, outside, t, pfs } = await setup();
    fs.writeFileSync(path.join(root, 'd', 'victim'), 'v');
    fs.mkdirSync(path.join(root, 'd', 'vdir'));
    const d = await walk(pfs, 'd');
    // proven once inside
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('none')))).toBe(E.ENOENT);
    fs.renameSync(path.join(root, 'd'), path.join(outside, 'd'));
    expect(await answer(t.fs.unlink(ctx, d.nodeid, B('victim')))).toBe('declined');
    expect(await answer(t.fs.rmdir(ctx, d.nodeid, B('vdir')))).toBe('declined');
    expect(fs.readdirSync(path.join(outside, 'd')).sort()).toEqual(['vdir', 'victim']);
    // and the owner refuses too
    expect(await answer(pfs.unlink(ctx, d.nodeid, B('victim')))).not.toBe(0);
    expect(fs.existsSync(path.join(outside, 'd', 'victim'))).toBe(true);
  });
});
