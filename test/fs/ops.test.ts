/**
 * Operation tests of the filesystem core without a mount: PassthroughFs driven through the
 * FileSystem interface on a temp dir, every result compared with what the host says (fs.*Sync
 * on the same tree, or the sys addon for what Node lacks).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PassthroughFs } from '../../src/fs/passthrough.js';
import {
  FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID, WRITE_KILL_SUIDGID,
  type Attr, type Context, type DirEntry, type Entry, type FileLock, type SetattrIn, type Timespec, type XattrReply,
} from '../../src/fs/types.js';
import {
  sys, AT_FDCWD, F_RDLCK, F_UNLCK, F_WRLCK, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_RDWR,
  O_TRUNC, O_WRONLY, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, SEEK_DATA, SEEK_HOLE, SEEK_SET, S_IFDIR, S_IFIFO,
  S_IFREG, XATTR_CREATE, XATTR_REPLACE,
} from '../../src/sys/syscalls.js';
import { B, ctx, errnoOf, makeFs, tmpdir, type Captured } from './helpers.js';

const OFFSET_MAX = 0x7fffffffffffffffn;
const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;
const NS = 1_000_000_000n;

let root = '';
let pfs: PassthroughFs;
let cap: Captured;

beforeEach(async () => {
  root = tmpdir('hfs-ops-');
  ({ pfs, cap } = makeFs(root));
  await pfs.init({ writeback: false, killPrivV2: false, passthrough: false });
});
afterEach(async () => {
  await pfs.destroy();
  fs.rmSync(root, { recursive: true, force: true });
});

const P = (rel: string): string => path.join(root, rel);

/** The errno name a synchronous host call fails with, 'OK' when it succeeds. */
function host(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

const tsNs = (t: Timespec): bigint => t.sec * NS + BigInt(t.nsec);

function hostAttr(p: string) {
  const st = fs.lstatSync(p, { bigint: true });
  const rdev = st.rdev;
  return {
    ino: st.ino, size: st.size, blocks: st.blocks, mode: Number(st.mode), nlink: Number(st.nlink),
    uid: Number(st.uid), gid: Number(st.gid), blksize: Number(st.blksize),
    rdevMajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    rdevMinor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn & 0xffffffffn)),
    atime: st.atimeNs, mtime: st.mtimeNs, ctime: st.ctimeNs, btime: st.birthtimeNs,
  };
}

function ourAttr(a: Attr) {
  return {
    ino: a.ino, size: a.size, blocks: a.blocks, mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid,
    blksize: a.blksize, rdevMajor: a.rdevMajor, rdevMinor: a.rdevMinor,
    atime: tsNs(a.atime), mtime: tsNs(a.mtime), ctime: tsNs(a.ctime), btime: a.btime ? tsNs(a.btime) : 0n,
  };
}

/** Every field of `a` equals the host's lstat of `p` (nanosecond times, 64-bit ino). */
function expectHostAttr(a: Attr, p: string): void {
  expect(ourAttr(a)).toEqual(hostAttr(p));
}

async function look(rel: string): Promise<Entry> {
  let parent = 1n;
  let e: Entry | null = null;
  for (const part of rel.split('/').filter(Boolean)) {
    e = await pfs.lookup(ctx, parent, B(part));
    parent = e.nodeid;
  }
  return e!;
}

function setattrIn(over: Partial<SetattrIn>): SetattrIn {
  const z: Timespec = { sec: 0n, nsec: 0 };
  return { valid: 0, fh: 0n, size: 0n, mode: 0, uid: 0, gid: 0, atime: z, mtime: z, ctime: z, ...over };
}

const lock = (type: number, start: bigint, end: bigint): FileLock => ({ type, start, end, pid: 0 });

function value(r: XattrReply): Buffer {
  if (!('value' in r)) throw new Error('expected a value reply');
  return r.value;
}

function size(r: XattrReply): number {
  if (!('size' in r)) throw new Error('expected a size reply');
  return r.size;
}

async function openFile(rel: string, flags = O_RDWR): Promise<{ nodeid: bigint; fh: bigint }> {
  const e = await look(rel);
  const o = await pfs.open(ctx, e.nodeid, flags);
  return { nodeid: e.nodeid, fh: o.fh };
}

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

const other: Context = { uid: 1234, gid: 5678, pid: 4242, unique: 9n };
const isRoot = process.getuid?.() === 0;

// ====================================================================== lookup

describe('lookup', () => {
  it('finds files, directories and symlinks with the host attributes', async () => {
    fs.writeFileSync(P('f'), 'hello');
    fs.mkdirSync(P('d'));
    fs.symlinkSync('f', P('l'));
    for (const n of ['f', 'd', 'l']) {
      const e = await pfs.lookup(ctx, 1n, B(n));
      expect(e.nodeid).not.toBe(0n);
      expect(e.nodeid).not.toBe(1n);
      expectHostAttr(e.attr, P(n));
    }
  });

  it('gives the same node id for the same inode: re-lookup and hard links', async () => {
    fs.writeFileSync(P('f'), '');
    fs.linkSync(P('f'), P('g'));
    const a = await pfs.lookup(ctx, 1n, B('f'));
    const b = await pfs.lookup(ctx, 1n, B('f'));
    const c = await pfs.lookup(ctx, 1n, B('g'));
    expect(b.nodeid).toBe(a.nodeid);
    expect(c.nodeid).toBe(a.nodeid);
    expect(b.generation).toBe(a.generation);
  });

  it('a re-lookup of a known name (no open) follows the host: fresh attributes, a replaced name is another node, a symlink stays a symlink', async () => {
    fs.writeFileSync(P('k'), 'one');
    fs.mkdirSync(P('kd'));
    fs.symlinkSync('k', P('kl'));
    const k = await pfs.lookup(ctx, 1n, B('k'));
    const kd = await pfs.lookup(ctx, 1n, B('kd'));
    const kl = await pfs.lookup(ctx, 1n, B('kl'));
    fs.appendFileSync(P('k'), 'more');
    fs.chmodSync(P('kd'), 0o700);
    for (const [n, e] of [['k', k], ['kd', kd], ['kl', kl]] as const) {
      const again = await pfs.lookup(ctx, 1n, B(n));
      expect(again.nodeid).toBe(e.nodeid);
      expectHostAttr(again.attr, P(n));
    }
    // replaced by the host (write + rename over): the name is another inode now
    fs.writeFileSync(P('k.new'), 'replacement');
    fs.renameSync(P('k.new'), P('k'));
    const r = await pfs.lookup(ctx, 1n, B('k'));
    expect(r.nodeid).not.toBe(k.nodeid);
    expectHostAttr(r.attr, P('k'));
    // a directory swapped for a file of the same name
    fs.rmSync(P('kd'), { recursive: true });
    fs.writeFileSync(P('kd'), 'file now');
    const f = await pfs.lookup(ctx, 1n, B('kd'));
    expect(f.nodeid).not.toBe(kd.nodeid);
    expect(f.attr.mode & 0o170000).toBe(0o100000);
    fs.rmSync(P('kd'));
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('kd')))).toBe('ENOENT');
  });

  it("'.' is the directory, '..' its parent, '..' of the root is the root", async () => {
    fs.mkdirSync(P('d/e'), { recursive: true });
    const d = await look('d');
    const e = await pfs.lookup(ctx, d.nodeid, B('e'));
    expect((await pfs.lookup(ctx, d.nodeid, B('.'))).nodeid).toBe(d.nodeid);
    expect((await pfs.lookup(ctx, e.nodeid, B('..'))).nodeid).toBe(d.nodeid);
    expect((await pfs.lookup(ctx, d.nodeid, B('..'))).nodeid).toBe(1n);
    const up = await pfs.lookup(ctx, 1n, B('..'));
    expect(up.nodeid).toBe(1n);
    expectHostAttr(up.attr, root);
    expectHostAttr((await pfs.lookup(ctx, 1n, B('.'))).attr, root);
  });

  it('ENOENT for a missing name, ENOTDIR below a file (as the host)', async () => {
    fs.writeFileSync(P('f'), '');
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('missing')))).toBe(host(() => fs.lstatSync(P('missing'))));
    const f = await look('f');
    expect(await errnoOf(pfs.lookup(ctx, f.nodeid, B('x')))).toBe(host(() => fs.lstatSync(P('f/x'))));
    expect(await errnoOf(pfs.lookup(ctx, f.nodeid, B('x')))).toBe('ENOTDIR');
  });

  it("names with '/', empty, NUL: EINVAL; 256 bytes: ENAMETOOLONG; 255 bytes work", async () => {
    fs.mkdirSync(P('a'));
    fs.writeFileSync(P('a/b'), '');
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('a/b')))).toBe('EINVAL');
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('')))).toBe('EINVAL');
    expect(await errnoOf(pfs.lookup(ctx, 1n, Buffer.from('a\0b')))).toBe('EINVAL');
    const long = 'x'.repeat(256);
    expect(await errnoOf(pfs.lookup(ctx, 1n, B(long)))).toBe(host(() => fs.lstatSync(P(long))));
    expect(await errnoOf(pfs.lookup(ctx, 1n, B(long)))).toBe('ENAMETOOLONG');
    const ok = 'y'.repeat(255);
    fs.writeFileSync(P(ok), '');
    expectHostAttr((await pfs.lookup(ctx, 1n, B(ok))).attr, P(ok));
  });

  it('non-UTF-8 names are bytes', async () => {
    const name = Buffer.from([0xff, 0xfe, 0x41]);
    fs.writeFileSync(Buffer.concat([Buffer.from(root + '/'), name]), 'b');
    const e = await pfs.lookup(ctx, 1n, name);
    expect(e.attr.size).toBe(1n);
  });

  it('an unknown parent node id is refused', async () => {
    expect(await errnoOf(pfs.lookup(ctx, 987654n, B('x')))).toBe('ESTALE');
  });
});

// ====================================================================== forget

describe('forget and batchForget', () => {
  it('dropping every lookup drops the node; its id is then stale', async () => {
    fs.writeFileSync(P('f'), '');
    const base = pfs.counters().inodes;
    const a = await look('f');
    await look('f');
    expect(pfs.counters().inodes).toBe(base + 1);
    pfs.forget(ctx, a.nodeid, 1n);
    expect(pfs.counters().inodes).toBe(base + 1);
    pfs.forget(ctx, a.nodeid, 1n);
    expect(pfs.counters().inodes).toBe(base);
    // the id stays a persistent handle (FUSE export): it comes back from its sealed record ...
    expect((await pfs.getattr(ctx, a.nodeid)).attr.ino).toBe(fs.statSync(P('f'), { bigint: true }).ino);
    expect(pfs.counters().resurrected).toBe(1);
    // ... and is stale once the file is gone
    pfs.forget(ctx, a.nodeid, 0n);
    fs.unlinkSync(P('f'));
    fs.writeFileSync(P('f'), 'new file, same name');
    const b = await look('f');
    expect(b.nodeid).not.toBe(a.nodeid);
  });

  it('a forget below zero saturates at zero with a log line and never throws', async () => {
    fs.writeFileSync(P('f'), '');
    const a = await look('f');
    expect(() => pfs.forget(ctx, a.nodeid, 5n)).not.toThrow();
    const line = cap.lines.find((l) => String(l.msg).includes('forget below zero'));
    expect(line).toBeDefined();
    expect(line!.nodeid).toBe(String(a.nodeid));
    // a huge count (beyond 2^53) too
    const b = await look('f');
    expect(() => pfs.forget(ctx, b.nodeid, 0xffffffffffffffffn)).not.toThrow();
    expect(pfs.counters().inodes).toBe(1);
  });

  it('unknown ids and the root are ignored', async () => {
    expect(() => pfs.forget(ctx, 999_999n, 1n)).not.toThrow();
    expect(() => pfs.forget(ctx, 0n, 1n)).not.toThrow();
    expect(() => pfs.forget(ctx, 1n, 1000n)).not.toThrow();
    expectHostAttr((await pfs.getattr(ctx, 1n)).attr, root);
  });

  it('batchForget applies every item, skipping unknown ones', async () => {
    for (const n of ['a', 'b', 'c']) fs.writeFileSync(P(n), '');
    const base = pfs.counters().inodes;
    const [a, b, c] = [await look('a'), await look('b'), await look('c')];
    await look('b');
    expect(pfs.counters().inodes).toBe(base + 3);
    expect(() => pfs.batchForget(ctx, [
      { nodeid: a.nodeid, nlookup: 1n }, { nodeid: 424242n, nlookup: 1n }, { nodeid: b.nodeid, nlookup: 1n },
      { nodeid: c.nodeid, nlookup: 3n }, { nodeid: 1n, nlookup: 1n },
    ])).not.toThrow();
    // b still holds one lookup
    expect(pfs.counters().inodes).toBe(base + 1);
    expect((await pfs.getattr(ctx, b.nodeid)).attr.ino).toBe(fs.statSync(P('b'), { bigint: true }).ino);
    // a left memory; its id comes back only while its file exists
    fs.unlinkSync(P('a'));
    expect(await errnoOf(pfs.getattr(ctx, a.nodeid))).toBe('ESTALE');
  });

  it('a node with an open file survives its forget until release', async () => {
    fs.writeFileSync(P('f'), 'data');
    const base = pfs.counters().inodes;
    const { nodeid, fh } = await openFile('f');
    pfs.forget(ctx, nodeid, 1n);
    expect(pfs.counters().inodes).toBe(base + 1);
    expect((await pfs.read(ctx, nodeid, fh, 0, 10)).toString()).toBe('data');
    await pfs.release(ctx, nodeid, fh, O_RDWR, 0n, false);
    expect(pfs.counters().inodes).toBe(base);
  });
});

describe('names are request-buffer views: what the filesystem keeps is copied', () => {
  it('lookup, mkdir, mknod, symlink, link: a reused request buffer does not change the stored name', async () => {
    await pfs.destroy();
    // by-path reopen re-walks the stored parent/name links
    ({ pfs, cap } = makeFs(root, { reopen: 'path', fdBudget: 4 }));
    fs.writeFileSync(P('aaa'), 'A');
    fs.writeFileSync(P('zzz'), 'Z');
    const names = ['aaa', 'ddd', 'fff', 'sss', 'lll'].map((n) => Buffer.from(n));
    const ids = [
      (await pfs.lookup(ctx, 1n, names[0]!)).nodeid,
      (await pfs.mkdir(ctx, 1n, names[1]!, 0o755, 0)).nodeid,
      (await pfs.mknod(ctx, 1n, names[2]!, S_IFIFO | 0o600, 0, 0)).nodeid,
      (await pfs.symlink(ctx, B('aaa'), 1n, names[3]!)).nodeid,
    ];
    const z = await pfs.lookup(ctx, 1n, B('zzz'));
    // link re-points the node's parent link at its new name
    ids.push((await pfs.link(ctx, z.nodeid, 1n, names[4]!)).nodeid);
    expect(ids[4]).toBe(z.nodeid);
    // the transport reuses its request buffers for the next requests
    for (const b of names) b.fill(0x71); // 'qqq'
    // push every inode fd out of the cache, then use the nodes again (reopen by path)
    for (let i = 0; i < 12; i++) {
      fs.writeFileSync(P(`pad${i}`), '');
      await pfs.lookup(ctx, 1n, B(`pad${i}`));
    }
    expect(pfs.counters().evictions).toBeGreaterThan(0);
    for (const [i, id] of ids.entries()) expect([i, await errnoOf(pfs.getattr(ctx, id))]).toEqual([i, 'OK']);
    expect(pfs.counters().reopenByPath).toBeGreaterThan(0);
  });
});

// ====================================================================== attributes

describe('getattr, statx, setattr', () => {
  it('getattr equals the host lstat in every field: file, dir, symlink, fifo, root', async () => {
    fs.writeFileSync(P('f'), 'x'.repeat(5000));
    fs.mkdirSync(P('d'));
    fs.symlinkSync('/somewhere/else', P('l'));
    sys.mknodat(AT_FDCWD, B(P('p')), S_IFIFO | 0o640, 0n);
    for (const n of ['f', 'd', 'l', 'p']) {
      const e = await look(n);
      expectHostAttr((await pfs.getattr(ctx, e.nodeid)).attr, P(n));
      expectHostAttr((await pfs.statx(ctx, e.nodeid, undefined, 0, 0x7ff)).attr, P(n));
    }
    expectHostAttr((await pfs.getattr(ctx, 1n)).attr, root);
    expect(await errnoOf(pfs.getattr(ctx, 31337n))).toBe('ESTALE');
  });

  it('getattr through an fh works after the file is unlinked (nlink 0)', async () => {
    fs.writeFileSync(P('f'), 'abc');
    const { nodeid, fh } = await openFile('f');
    await pfs.unlink(ctx, 1n, B('f'));
    const a = (await pfs.getattr(ctx, nodeid, fh)).attr;
    expect(a.nlink).toBe(0);
    expect(a.size).toBe(3n);
    const s = (await pfs.statx(ctx, nodeid, fh, 0, 0x7ff)).attr;
    expect(s.nlink).toBe(0);
  });

  it('setattr mode', async () => {
    fs.writeFileSync(P('f'), '');
    const e = await look('f');
    const r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_MODE, mode: S_IFREG | 0o4751 }));
    expect(r.attr.mode & 0o7777).toBe(0o4751);
    expectHostAttr(r.attr, P('f'));
  });

  it.runIf(isRoot)('setattr uid and gid, each alone and both', async () => {
    fs.writeFileSync(P('f'), '');
    const e = await look('f');
    let r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_UID | FATTR_GID, uid: 1234, gid: 5678 }));
    expect([r.attr.uid, r.attr.gid]).toEqual([1234, 5678]);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_GID, uid: 1, gid: 99 }));
    expect([r.attr.uid, r.attr.gid]).toEqual([1234, 99]);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_UID, uid: 77, gid: 1 }));
    expect([r.attr.uid, r.attr.gid]).toEqual([77, 99]);
    expectHostAttr(r.attr, P('f'));
    // a symlink itself
    fs.symlinkSync('f', P('l'));
    const l = await look('l');
    r = await pfs.setattr(ctx, l.nodeid, setattrIn({ valid: FATTR_UID | FATTR_GID, uid: 11, gid: 12 }));
    expect(fs.lstatSync(P('l')).uid).toBe(11);
    expect(fs.statSync(P('f')).uid).toBe(77);
  });

  it('setattr size grows and shrinks, with and without an fh; EISDIR on a directory', async () => {
    fs.writeFileSync(P('f'), 'abcdef');
    const e = await look('f');
    let r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_SIZE, size: 3n }));
    expect(r.attr.size).toBe(3n);
    expect(fs.readFileSync(P('f'), 'utf8')).toBe('abc');
    const o = await pfs.open(ctx, e.nodeid, O_RDWR);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_SIZE | FATTR_FH, fh: o.fh, size: 10n }));
    expect(r.attr.size).toBe(10n);
    expectHostAttr(r.attr, P('f'));
    expect(fs.readFileSync(P('f'))).toEqual(Buffer.from('abc\0\0\0\0\0\0\0'));
    fs.mkdirSync(P('d'));
    const d = await look('d');
    expect(await errnoOf(pfs.setattr(ctx, d.nodeid, setattrIn({ valid: FATTR_SIZE, size: 0n }))))
      .toBe(host(() => fs.truncateSync(P('d'), 0)));
    // an fh of another node
    expect(await errnoOf(pfs.setattr(ctx, d.nodeid, setattrIn({ valid: FATTR_SIZE | FATTR_FH, fh: o.fh, size: 0n })))).toBe('EBADF');
  });

  it('setattr size on a read-only (0444) file as root', async () => {
    fs.writeFileSync(P('f'), 'abcdef', { mode: 0o444 });
    fs.chmodSync(P('f'), 0o444);
    const e = await look('f');
    const want = host(() => fs.truncateSync(P('f'), 6));
    expect(await errnoOf(pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_SIZE, size: 1n })))).toBe(want);
  });

  it('setattr atime/mtime: explicit nanoseconds, NOW, and omitted', async () => {
    fs.writeFileSync(P('f'), '');
    const e = await look('f');
    const at: Timespec = { sec: 1_600_000_000n, nsec: 123_456_789 };
    const mt: Timespec = { sec: 1_500_000_000n, nsec: 987_654_321 };
    let r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_ATIME | FATTR_MTIME, atime: at, mtime: mt }));
    expect(tsNs(r.attr.atime)).toBe(1_600_000_000_123_456_789n);
    expect(tsNs(r.attr.mtime)).toBe(1_500_000_000_987_654_321n);
    expectHostAttr(r.attr, P('f'));
    // only mtime: atime is left alone
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_MTIME, atime: mt, mtime: { sec: 1_000_000_000n, nsec: 1 } }));
    expect(tsNs(r.attr.atime)).toBe(1_600_000_000_123_456_789n);
    expect(tsNs(r.attr.mtime)).toBe(1_000_000_000_000_000_001n);
    // NOW: the server's clock, whatever the given value
    const before = BigInt(Date.now() - 2000) * 1_000_000n;
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_MTIME | FATTR_MTIME_NOW, mtime: mt }));
    expect(tsNs(r.attr.mtime)).toBeGreaterThan(before);
    expect(tsNs(r.attr.atime)).toBe(1_600_000_000_123_456_789n);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_ATIME_NOW }));
    expect(tsNs(r.attr.atime)).toBeGreaterThan(before);
    expectHostAttr(r.attr, P('f'));
  });

  it('setattr mode on a symlink: as the host (lchmod)', async () => {
    fs.symlinkSync('x', P('l'));
    const l = await look('l');
    const want = host(() => sys.fchmodat2(AT_FDCWD, B(P('l')), 0o600, 0x100 /* AT_SYMLINK_NOFOLLOW */));
    expect(await errnoOf(pfs.setattr(ctx, l.nodeid, setattrIn({ valid: FATTR_MODE, mode: 0o600 })))).toBe(want);
  });

  it('HANDLE_KILLPRIV_V2: write and truncate with KILL_SUIDGID clear setuid and setgid (group-exec)', async () => {
    await pfs.init({ writeback: false, killPrivV2: true, passthrough: false });
    fs.writeFileSync(P('f'), 'x');
    fs.chmodSync(P('f'), 0o6755);
    const { nodeid, fh } = await openFile('f');
    await pfs.write(ctx, nodeid, fh, 0, B('y'), 0);
    expect(fs.statSync(P('f')).mode & 0o7777).toBe(0o6755);
    await pfs.write(ctx, nodeid, fh, 0, B('y'), WRITE_KILL_SUIDGID);
    expect(fs.statSync(P('f')).mode & 0o7777).toBe(0o755);
    fs.chmodSync(P('f'), 0o6745); // setgid without group-exec is mandatory locking, kept
    await pfs.setattr(ctx, nodeid, setattrIn({ valid: FATTR_SIZE | FATTR_KILL_SUIDGID, size: 0n }));
    expect(fs.statSync(P('f')).mode & 0o7777).toBe(0o2745);
  });

  it('setattr times on a symlink change the link, not its target', async () => {
    fs.writeFileSync(P('f'), '');
    fs.symlinkSync('f', P('l'));
    const fm = fs.statSync(P('f'), { bigint: true }).mtimeNs;
    const l = await look('l');
    const r = await pfs.setattr(ctx, l.nodeid, setattrIn({ valid: FATTR_MTIME, mtime: { sec: 1_234_567_890n, nsec: 5 } }));
    expect(tsNs(r.attr.mtime)).toBe(1_234_567_890_000_000_005n);
    expect(fs.lstatSync(P('l'), { bigint: true }).mtimeNs).toBe(1_234_567_890_000_000_005n);
    expect(fs.statSync(P('f'), { bigint: true }).mtimeNs).toBe(fm);
  });
});

// ====================================================================== names

describe('readlink, symlink, mknod, mkdir', () => {
  it('readlink returns targets verbatim, EINVAL on a non-symlink', async () => {
    const targets = ['/etc/passwd', '../../../../outside', 'a//b/', '/'];
    for (const [i, t] of targets.entries()) fs.symlinkSync(t, P(`l${i}`));
    const bin = Buffer.from([0x2f, 0xff, 0xfe]);
    fs.symlinkSync(bin, Buffer.from(P('lbin')));
    for (const [i, t] of targets.entries()) expect((await pfs.readlink(ctx, (await look(`l${i}`)).nodeid)).toString()).toBe(t);
    expect((await pfs.readlink(ctx, (await look('lbin')).nodeid)).equals(bin)).toBe(true);
    fs.writeFileSync(P('f'), '');
    expect(await errnoOf(pfs.readlink(ctx, (await look('f')).nodeid))).toBe(host(() => fs.readlinkSync(P('f'))));
    expect(await errnoOf(pfs.readlink(ctx, 1n))).toBe(host(() => fs.readlinkSync(root)));
  });

  it('symlink creates a link with the target stored as given; EEXIST; bad targets refused', async () => {
    const e = await pfs.symlink(ctx, B('../../escape'), 1n, B('l'));
    expectHostAttr(e.attr, P('l'));
    expect(fs.readlinkSync(P('l'))).toBe('../../escape');
    expect(await errnoOf(pfs.symlink(ctx, B('x'), 1n, B('l')))).toBe(host(() => fs.symlinkSync('x', P('l'))));
    // an empty target: the host says ENOENT (the kernel never sends one); the server refuses it too
    expect(host(() => fs.symlinkSync('', P('e')))).toBe('ENOENT');
    expect(await errnoOf(pfs.symlink(ctx, B(''), 1n, B('e')))).not.toBe('OK');
    expect(await errnoOf(pfs.symlink(ctx, Buffer.from('a\0b'), 1n, B('e')))).toBe('EINVAL');
    expect(await errnoOf(pfs.symlink(ctx, B('x'), 1n, B('a/b')))).toBe('EINVAL');
    expect(fs.existsSync(P('e'))).toBe(false);
  });

  it('mknod makes a FIFO and a regular file with the umask applied; EEXIST', async () => {
    const e = await pfs.mknod(ctx, 1n, B('p'), S_IFIFO | 0o666, 0, 0o022);
    const st = fs.lstatSync(P('p'));
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o777).toBe(0o644);
    expectHostAttr(e.attr, P('p'));
    const r = await pfs.mknod(ctx, 1n, B('r'), S_IFREG | 0o640, 0, 0);
    expect(fs.lstatSync(P('r')).isFile()).toBe(true);
    expectHostAttr(r.attr, P('r'));
    expect(await errnoOf(pfs.mknod(ctx, 1n, B('p'), S_IFIFO | 0o666, 0, 0))).toBe('EEXIST');
    // FIFOs are never opened by the server
    expect(await errnoOf(pfs.open(ctx, e.nodeid, O_RDONLY))).not.toBe('OK');
  });

  it.runIf(isRoot)('mknod of a character device decodes the client rdev', async () => {
    // new_encode_dev(makedev(1, 259)): minor low byte | major << 8 | minor high bits << 12
    const rdev = (259 & 0xff) | (1 << 8) | ((259 & ~0xff) << 12);
    const e = await pfs.mknod(ctx, 1n, B('c'), 0o020000 | 0o600, rdev, 0);
    expect([e.attr.rdevMajor, e.attr.rdevMinor]).toEqual([1, 259]);
    expectHostAttr(e.attr, P('c'));
  });

  it('mkdir with the umask; EEXIST; ENOTDIR under a file', async () => {
    const e = await pfs.mkdir(ctx, 1n, B('d'), 0o777, 0o027);
    expect(fs.statSync(P('d')).mode & 0o777).toBe(0o750);
    expectHostAttr(e.attr, P('d'));
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('d'), 0o777, 0))).toBe(host(() => fs.mkdirSync(P('d'))));
    const f = await pfs.create(ctx, 1n, B('f'), 0o644, O_RDWR, 0);
    expect(await errnoOf(pfs.mkdir(ctx, f.entry.nodeid, B('x'), 0o777, 0))).toBe(host(() => fs.mkdirSync(P('f/x'))));
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('.'), 0o777, 0))).toBe('EINVAL');
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('..'), 0o777, 0))).toBe('EINVAL');
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('z'.repeat(256)), 0o777, 0))).toBe(host(() => fs.mkdirSync(P('z'.repeat(256)))));
    // setgid directories hand setgid down to subdirectories
    fs.chmodSync(P('d'), 0o2775);
    await pfs.mkdir(ctx, e.nodeid, B('sub'), 0o755, 0);
    expect(fs.statSync(P('d/sub')).mode & 0o7777).toBe(0o2755);
  });
});

describe('unlink, rmdir', () => {
  it('unlink removes a name; ENOENT, EISDIR as the host', async () => {
    fs.writeFileSync(P('f'), '');
    fs.mkdirSync(P('d'));
    await pfs.unlink(ctx, 1n, B('f'));
    expect(fs.existsSync(P('f'))).toBe(false);
    expect(await errnoOf(pfs.unlink(ctx, 1n, B('f')))).toBe(host(() => fs.unlinkSync(P('f'))));
    expect(await errnoOf(pfs.unlink(ctx, 1n, B('d')))).toBe(host(() => fs.unlinkSync(P('d'))));
    expect(await errnoOf(pfs.unlink(ctx, 1n, B('a/b')))).toBe('EINVAL');
  });

  it('rmdir removes an empty directory; ENOTEMPTY, ENOTDIR, ENOENT as the host', async () => {
    fs.mkdirSync(P('d/e'), { recursive: true });
    fs.writeFileSync(P('f'), '');
    expect(await errnoOf(pfs.rmdir(ctx, 1n, B('d')))).toBe(host(() => fs.rmdirSync(P('d'))));
    expect(await errnoOf(pfs.rmdir(ctx, 1n, B('f')))).toBe(host(() => fs.rmdirSync(P('f'))));
    expect(await errnoOf(pfs.rmdir(ctx, 1n, B('nope')))).toBe(host(() => fs.rmdirSync(P('nope'))));
    expect(await errnoOf(pfs.rmdir(ctx, 1n, B('.')))).toBe('EINVAL');
    const d = await look('d');
    await pfs.rmdir(ctx, d.nodeid, B('e'));
    await pfs.rmdir(ctx, 1n, B('d'));
    expect(fs.readdirSync(root)).toEqual(['f']);
  });

  it('an open file unlinked keeps working through its fh', async () => {
    fs.writeFileSync(P('f'), 'abc');
    const { nodeid, fh } = await openFile('f');
    await pfs.unlink(ctx, 1n, B('f'));
    expect(await pfs.write(ctx, nodeid, fh, 3, B('def'), 0)).toBe(3);
    expect((await pfs.read(ctx, nodeid, fh, 0, 100)).toString()).toBe('abcdef');
    await pfs.release(ctx, nodeid, fh, O_RDWR, 0n, false);
  });
});

describe('rename', () => {
  it('plain rename keeps the node id; a file over a file replaces it', async () => {
    fs.writeFileSync(P('a'), 'A');
    fs.writeFileSync(P('b'), 'B');
    const a = await look('a');
    await pfs.rename(ctx, 1n, B('a'), 1n, B('b'), 0);
    expect(fs.readdirSync(root)).toEqual(['b']);
    expect(fs.readFileSync(P('b'), 'utf8')).toBe('A');
    expect((await look('b')).nodeid).toBe(a.nodeid);
    expect(await errnoOf(pfs.rename(ctx, 1n, B('a'), 1n, B('c'), 0))).toBe(host(() => fs.renameSync(P('a'), P('c'))));
  });

  it('across directories; a directory over an empty one; over a non-empty one as the host', async () => {
    fs.mkdirSync(P('x/src'), { recursive: true });
    fs.writeFileSync(P('x/src/f'), 'f');
    fs.mkdirSync(P('y/empty'), { recursive: true });
    fs.mkdirSync(P('y/full'));
    fs.writeFileSync(P('y/full/g'), '');
    const x = await look('x');
    const y = await look('y');
    const src = await look('x/src');
    expect(await errnoOf(pfs.rename(ctx, x.nodeid, B('src'), y.nodeid, B('full'), 0)))
      .toBe(host(() => fs.renameSync(P('x/src'), P('y/full'))));
    await pfs.rename(ctx, x.nodeid, B('src'), y.nodeid, B('empty'), 0);
    expect(fs.readFileSync(P('y/empty/f'), 'utf8')).toBe('f');
    // the moved directory's parent link follows it
    expect((await pfs.lookup(ctx, src.nodeid, B('..'))).nodeid).toBe(y.nodeid);
    // a directory into its own subdirectory
    expect(await errnoOf(pfs.rename(ctx, 1n, B('y'), src.nodeid, B('in'), 0))).toBe(host(() => fs.renameSync(P('y'), P('y/empty/in'))));
    expect(await errnoOf(pfs.rename(ctx, 1n, B('y'), src.nodeid, B('in'), 0))).toBe('EINVAL');
  });

  it('RENAME_NOREPLACE: EEXIST over an existing name, a move otherwise', async () => {
    fs.writeFileSync(P('a'), 'A');
    fs.writeFileSync(P('b'), 'B');
    expect(await errnoOf(pfs.rename(ctx, 1n, B('a'), 1n, B('b'), RENAME_NOREPLACE)))
      .toBe(host(() => sys.renameat2(AT_FDCWD, B(P('a')), AT_FDCWD, B(P('b')), RENAME_NOREPLACE)));
    expect(fs.readFileSync(P('b'), 'utf8')).toBe('B');
    await pfs.rename(ctx, 1n, B('a'), 1n, B('c'), RENAME_NOREPLACE);
    expect(fs.readdirSync(root).sort()).toEqual(['b', 'c']);
  });

  it('RENAME_EXCHANGE swaps; each node keeps its id under its new name', async () => {
    fs.writeFileSync(P('f'), 'F');
    fs.mkdirSync(P('d'));
    const f = await look('f');
    const d = await look('d');
    await pfs.rename(ctx, 1n, B('f'), 1n, B('d'), RENAME_EXCHANGE);
    expect(fs.readFileSync(P('d'), 'utf8')).toBe('F');
    expect(fs.statSync(P('f')).isDirectory()).toBe(true);
    expect((await look('d')).nodeid).toBe(f.nodeid);
    expect((await look('f')).nodeid).toBe(d.nodeid);
    expect(await errnoOf(pfs.rename(ctx, 1n, B('f'), 1n, B('none'), RENAME_EXCHANGE)))
      .toBe(host(() => sys.renameat2(AT_FDCWD, B(P('f')), AT_FDCWD, B(P('none')), RENAME_EXCHANGE)));
    expect(await errnoOf(pfs.rename(ctx, 1n, B('f'), 1n, B('d'), RENAME_EXCHANGE | RENAME_NOREPLACE))).toBe('EINVAL');
  });

  it('RENAME_WHITEOUT does what the host does', async () => {
    fs.writeFileSync(P('a'), 'A');
    const hostDir = tmpdir('hfs-ops-host-');
    try {
      fs.writeFileSync(path.join(hostDir, 'a'), 'A');
      const want = host(() => sys.renameat2(AT_FDCWD, B(path.join(hostDir, 'a')), AT_FDCWD, B(path.join(hostDir, 'b')), RENAME_WHITEOUT));
      const got = await errnoOf(pfs.rename(ctx, 1n, B('a'), 1n, B('b'), RENAME_WHITEOUT));
      expect(got).toBe(want);
      expect(fs.readdirSync(root).sort()).toEqual(fs.readdirSync(hostDir).sort());
    } finally {
      fs.rmSync(hostDir, { recursive: true, force: true });
    }
    expect(await errnoOf(pfs.rename(ctx, 1n, B('b'), 1n, B('c'), 1 << 5))).toBe('EINVAL');
  });

  it('renaming over an open file keeps the old data readable through its fh', async () => {
    fs.writeFileSync(P('a'), 'old');
    fs.writeFileSync(P('b'), 'new');
    const { nodeid, fh } = await openFile('a', O_RDONLY);
    await pfs.rename(ctx, 1n, B('b'), 1n, B('a'), 0);
    expect((await pfs.read(ctx, nodeid, fh, 0, 10)).toString()).toBe('old');
    expect((await pfs.getattr(ctx, nodeid, fh)).attr.nlink).toBe(0);
    expect((await look('a')).nodeid).not.toBe(nodeid);
  });
});

describe('link', () => {
  it('a hard link returns the same node with nlink 2; EPERM on a directory; EEXIST', async () => {
    fs.writeFileSync(P('f'), 'x');
    fs.mkdirSync(P('d'));
    const f = await look('f');
    const d = await look('d');
    const e = await pfs.link(ctx, f.nodeid, d.nodeid, B('g'));
    expect(e.nodeid).toBe(f.nodeid);
    expect(e.attr.nlink).toBe(2);
    expect(fs.statSync(P('d/g')).ino).toBe(fs.statSync(P('f')).ino);
    expectHostAttr(e.attr, P('f'));
    expect(await errnoOf(pfs.link(ctx, d.nodeid, 1n, B('d2')))).toBe(host(() => fs.linkSync(P('d'), P('d2'))));
    expect(await errnoOf(pfs.link(ctx, f.nodeid, d.nodeid, B('g')))).toBe(host(() => fs.linkSync(P('f'), P('d/g'))));
    // a symlink can be hard-linked itself
    fs.symlinkSync('f', P('l'));
    const l = await look('l');
    await pfs.link(ctx, l.nodeid, 1n, B('l2'));
    expect(fs.readlinkSync(P('l2'))).toBe('f');
  });
});

// ====================================================================== files

describe('open, create, read, write', () => {
  it('a filesystem that refuses RWF_NOWAIT is asked once, not on every read and write; the data is right', async () => {
    // what the host's filesystem says to a non-blocking buffered write and read (ext4: writes refused)
    fs.writeFileSync(P('probe'), 'x');
    const pfd = fs.openSync(P('probe'), 'r+');
    const one = Buffer.from('y');
    const refused = [sys.pwriteNowait(pfd, one, 0, 1, 0), sys.preadNowait(pfd, one, 0, 1, 0)].filter((r) => r === -95).length;
    fs.closeSync(pfd);
    const c = await pfs.create(ctx, 1n, B('f'), 0o644, O_RDWR | O_CREAT, 0);
    for (let i = 0; i < 20; i++) expect(await pfs.write(ctx, c.entry.nodeid, c.open.fh, i * 4, B(`w${String(i).padStart(2, '0')} `.slice(0, 4)), 0)).toBe(4);
    for (let i = 0; i < 20; i++) expect((await pfs.read(ctx, c.entry.nodeid, c.open.fh, i * 4, 4)).toString()).toBe(`w${String(i).padStart(2, '0')} `.slice(0, 4));
    expect(pfs.counters().nowaitRefusals).toBe(refused);
    expect(fs.readFileSync(P('f'), 'utf8').slice(0, 8)).toBe('w00 w01 ');
    await pfs.release(ctx, c.entry.nodeid, c.open.fh, O_RDWR, 0n, false);
  });

  it('create makes the file with the host attributes; O_EXCL on an existing name is EEXIST', async () => {
    const c = await pfs.create(ctx, 1n, B('f'), 0o666, O_RDWR | O_CREAT, 0o022);
    expect(fs.statSync(P('f')).mode & 0o777).toBe(0o644);
    expectHostAttr(c.entry.attr, P('f'));
    expect(await errnoOf(pfs.create(ctx, 1n, B('f'), 0o666, O_RDWR | O_CREAT | O_EXCL, 0)))
      .toBe(host(() => fs.openSync(P('f'), 'wx')));
    // without O_EXCL an existing file is opened, not truncated
    await pfs.write(ctx, c.entry.nodeid, c.open.fh, 0, B('keep'), 0);
    const again = await pfs.create(ctx, 1n, B('f'), 0o600, O_RDWR | O_CREAT, 0);
    expect(again.entry.nodeid).toBe(c.entry.nodeid);
    expect(fs.readFileSync(P('f'), 'utf8')).toBe('keep');
    expect(fs.statSync(P('f')).mode & 0o777).toBe(0o644);
    // a symlink at the name is never followed
    fs.symlinkSync('/tmp/hfs-should-not-exist', P('l'));
    expect(await errnoOf(pfs.create(ctx, 1n, B('l'), 0o644, O_RDWR | O_CREAT, 0))).toBe('ELOOP');
    expect(fs.existsSync('/tmp/hfs-should-not-exist')).toBe(false);
    expect(await errnoOf(pfs.create(ctx, 1n, B('a/b'), 0o644, O_RDWR, 0))).toBe('EINVAL');
  });

  it('open with O_TRUNC truncates; a directory is EISDIR', async () => {
    fs.writeFileSync(P('f'), 'content');
    const { nodeid, fh } = await openFile('f', O_WRONLY | O_TRUNC);
    expect(fs.statSync(P('f')).size).toBe(0);
    await pfs.release(ctx, nodeid, fh, 0, 0n, false);
    fs.mkdirSync(P('d'));
    expect(await errnoOf(pfs.open(ctx, (await look('d')).nodeid, O_RDONLY))).toBe('EISDIR');
  });

  it('write then read back; a short read at EOF; offsets beyond 4 GiB', async () => {
    const c = await pfs.create(ctx, 1n, B('f'), 0o644, O_RDWR, 0);
    const { nodeid } = c.entry;
    const fh = c.open.fh;
    expect(await pfs.write(ctx, nodeid, fh, 0, B('hello world'), 0)).toBe(11);
    expect((await pfs.read(ctx, nodeid, fh, 6, 100)).toString()).toBe('world');
    expect((await pfs.read(ctx, nodeid, fh, 11, 100)).length).toBe(0);
    const big = 5 * 2 ** 30;
    expect(await pfs.write(ctx, nodeid, fh, big, B('far'), 0)).toBe(3);
    expect(fs.statSync(P('f')).size).toBe(big + 3);
    expect((await pfs.read(ctx, nodeid, fh, big - 2, 10))).toEqual(Buffer.from('\0\0far'));
    expect(await errnoOf(pfs.read(ctx, nodeid, fh, -1, 10))).toBe('EINVAL');
    expect(await errnoOf(pfs.write(ctx, nodeid, fh, -1, B('x'), 0))).toBe('EINVAL');
  });

  it('read on a write-only fh and write on a read-only fh fail as the host', async () => {
    fs.writeFileSync(P('f'), 'abc');
    const w = await openFile('f', O_WRONLY);
    const r = await openFile('f', O_RDONLY);
    const hw = fs.openSync(P('f'), 'a');
    const hr = fs.openSync(P('f'), 'r');
    try {
      expect(await errnoOf(pfs.read(ctx, w.nodeid, w.fh, 0, 1))).toBe(host(() => fs.readSync(hw, Buffer.alloc(1), 0, 1, 0)));
      expect(await errnoOf(pfs.write(ctx, r.nodeid, r.fh, 0, B('x'), 0))).toBe(host(() => fs.writeSync(hr, 'x', 0)));
    } finally {
      fs.closeSync(hw);
      fs.closeSync(hr);
    }
  });

  it('O_APPEND is kept: writes append whatever the offset', async () => {
    fs.writeFileSync(P('f'), 'abc');
    const { nodeid, fh } = await openFile('f', O_WRONLY | O_APPEND);
    await pfs.write(ctx, nodeid, fh, 0, B('def'), 0);
    await pfs.write(ctx, nodeid, fh, 1, B('ghi'), 0);
    expect(fs.readFileSync(P('f'), 'utf8')).toBe('abcdefghi');
  });

  it('with writeback cache the kernel handles O_APPEND: the offset is used', async () => {
    await pfs.init({ writeback: true, killPrivV2: false, passthrough: false });
    fs.writeFileSync(P('f'), 'abc');
    const { nodeid, fh } = await openFile('f', O_WRONLY | O_APPEND);
    await pfs.write(ctx, nodeid, fh, 3, B('def'), 0);
    await pfs.write(ctx, nodeid, fh, 0, B('X'), 0);
    expect(fs.readFileSync(P('f'), 'utf8')).toBe('Xbcdef');
    // write-only opens become read-write: the kernel may read to fill pages
    expect((await pfs.read(ctx, nodeid, fh, 0, 3)).toString()).toBe('Xbc');
  });

  it('flush, fsync, fdatasync succeed; release ends the fh', async () => {
    const { nodeid, fh } = await (async () => {
      fs.writeFileSync(P('f'), '');
      return openFile('f');
    })();
    await pfs.write(ctx, nodeid, fh, 0, B('x'), 0);
    await pfs.flush(ctx, nodeid, fh, 1n);
    await pfs.flush(ctx, nodeid, fh, 1n);
    await pfs.fsync(ctx, nodeid, fh, false);
    await pfs.fsync(ctx, nodeid, fh, true);
    await pfs.release(ctx, nodeid, fh, O_RDWR, 1n, false);
    expect(await errnoOf(pfs.read(ctx, nodeid, fh, 0, 1))).toBe('EBADF');
    expect(await errnoOf(pfs.release(ctx, nodeid, fh, O_RDWR, 1n, false))).toBe('EBADF');
    expect(await errnoOf(pfs.fsync(ctx, nodeid, fh, false))).toBe('EBADF');
  });

  it('an fh used with the wrong node id, or of the wrong kind, is EBADF', async () => {
    fs.writeFileSync(P('a'), 'A');
    fs.writeFileSync(P('b'), 'B');
    fs.mkdirSync(P('d'));
    const a = await openFile('a');
    const b = await look('b');
    const d = await look('d');
    const dh = await pfs.opendir(ctx, d.nodeid, 0);
    expect(await errnoOf(pfs.read(ctx, b.nodeid, a.fh, 0, 1))).toBe('EBADF');
    expect(await errnoOf(pfs.write(ctx, b.nodeid, a.fh, 0, B('x'), 0))).toBe('EBADF');
    expect(await errnoOf(pfs.getattr(ctx, b.nodeid, a.fh))).toBe('EBADF');
    expect(await errnoOf(pfs.flush(ctx, b.nodeid, a.fh, 0n))).toBe('EBADF');
    expect(await errnoOf(pfs.release(ctx, b.nodeid, a.fh, 0, 0n, false))).toBe('EBADF');
    expect(await errnoOf(pfs.read(ctx, d.nodeid, dh.fh, 0, 1))).toBe('EBADF');
    expect(await errnoOf(pfs.readdir(ctx, a.nodeid, a.fh, 0n, 4096, () => true))).toBe('EBADF');
    expect(await errnoOf(pfs.releasedir(ctx, a.nodeid, a.fh))).toBe('EBADF');
    expect(await errnoOf(pfs.read(ctx, a.nodeid, 999_999n, 0, 1))).toBe('EBADF');
    expect(await errnoOf(pfs.lseek(ctx, b.nodeid, a.fh, 0n, SEEK_DATA))).toBe('EBADF');
    expect(await errnoOf(pfs.setlk(ctx, b.nodeid, a.fh, 1n, lock(F_WRLCK, 0n, 0n), false, false))).toBe('EBADF');
    // the right pairing still works
    expect((await pfs.read(ctx, a.nodeid, a.fh, 0, 1)).toString()).toBe('A');
  });

  it('fallocate: allocate, KEEP_SIZE, PUNCH_HOLE; unsupported modes as the host', async () => {
    fs.writeFileSync(P('f'), '');
    const { nodeid, fh } = await openFile('f');
    await pfs.fallocate(ctx, nodeid, fh, 0, 0, 1 << 20);
    expect(fs.statSync(P('f')).size).toBe(1 << 20);
    await pfs.fallocate(ctx, nodeid, fh, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20);
    const st = fs.statSync(P('f'));
    expect(st.size).toBe(1 << 20);
    expect(st.blocks).toBeGreaterThanOrEqual((2 << 20) / 512);
    await pfs.write(ctx, nodeid, fh, 0, Buffer.alloc(1 << 20, 0x61), 0);
    await pfs.fallocate(ctx, nodeid, fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192);
    expect((await pfs.read(ctx, nodeid, fh, 4096, 8192)).equals(Buffer.alloc(8192))).toBe(true);
    expect(await pfs.lseek(ctx, nodeid, fh, 0n, SEEK_HOLE)).toBe(4096n);
    // PUNCH_HOLE without KEEP_SIZE: the host refuses it
    const hfd = fs.openSync(P('f'), 'r+');
    try {
      const want = await errnoOf(sys.fallocateAsync(hfd, FALLOC_FL_PUNCH_HOLE, 0, 4096));
      expect(await errnoOf(pfs.fallocate(ctx, nodeid, fh, FALLOC_FL_PUNCH_HOLE, 0, 4096))).toBe(want);
    } finally {
      fs.closeSync(hfd);
    }
  });

  it('lseek SEEK_DATA / SEEK_HOLE as the host; other whences EINVAL', async () => {
    const fd = fs.openSync(P('f'), 'w');
    fs.writeSync(fd, Buffer.from('data'), 0, 4, 1 << 20);
    fs.writeSync(fd, Buffer.from('more'), 0, 4, 6 << 30);
    const hostSeek = (off: bigint, wh: number): string | bigint => {
      try {
        return sys.lseek(fd, off, wh);
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    const { nodeid, fh } = await openFile('f', O_RDONLY);
    const ours = async (off: bigint, wh: number): Promise<string | bigint> => {
      try {
        return await pfs.lseek(ctx, nodeid, fh, off, wh);
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    const size = BigInt((6 << 30) + 4);
    for (const off of [0n, 4096n, 1n << 20n, (1n << 20n) + 5000n, 4n << 30n, size - 1n, size, size + 10n]) {
      for (const wh of [SEEK_DATA, SEEK_HOLE]) expect([off, wh, await ours(off, wh)]).toEqual([off, wh, hostSeek(off, wh)]);
    }
    fs.closeSync(fd);
    expect(await ours(0n, SEEK_SET)).toBe('EINVAL');
    expect(await ours(0n, 1)).toBe('EINVAL');
  });

  it('copyFileRange copies between two open files', async () => {
    const data = Buffer.alloc(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    fs.writeFileSync(P('src'), data);
    fs.writeFileSync(P('dst'), 'HEAD');
    const s = await openFile('src', O_RDONLY);
    const d = await openFile('dst', O_WRONLY);
    let total = 0;
    while (total < 150_000) {
      const n = await pfs.copyFileRange(ctx, s.nodeid, s.fh, 10 + total, d.nodeid, d.fh, 4 + total, 150_000 - total, 0);
      if (n === 0) break;
      total += n;
    }
    expect(total).toBe(150_000);
    const back = fs.readFileSync(P('dst'));
    expect(back.subarray(0, 4).toString()).toBe('HEAD');
    expect(back.subarray(4).equals(data.subarray(10, 150_010))).toBe(true);
    expect(await errnoOf(pfs.copyFileRange(ctx, s.nodeid, d.fh, 0, d.nodeid, d.fh, 0, 10, 0))).toBe('EBADF');
    // a write-only source: the host's answer
    const hin = fs.openSync(P('dst'), 'w');
    const hout = fs.openSync(P('src'), 'r+');
    const want = await errnoOf(sys.copyFileRangeAsync(hin, 0, hout, 0, 1, 0));
    fs.closeSync(hin);
    fs.closeSync(hout);
    expect(await errnoOf(pfs.copyFileRange(ctx, d.nodeid, d.fh, 0, s.nodeid, s.fh, 0, 1, 0))).toBe(want);
  });

  it('tmpfile: an unnamed open file, usable, gone on release', async () => {
    fs.mkdirSync(P('d'));
    const d = await look('d');
    const base = pfs.counters().inodes;
    const t = await pfs.tmpfile(ctx, d.nodeid, 0o600, O_RDWR, 0);
    expect(fs.readdirSync(P('d'))).toEqual([]);
    expect(t.entry.attr.nlink).toBe(0);
    expect(t.entry.attr.mode & 0o777).toBe(0o600);
    expect(await pfs.write(ctx, t.entry.nodeid, t.open.fh, 0, B('tmp'), 0)).toBe(3);
    expect((await pfs.read(ctx, t.entry.nodeid, t.open.fh, 0, 10)).toString()).toBe('tmp');
    expect((await pfs.getattr(ctx, t.entry.nodeid)).attr.size).toBe(3n);
    expect(pfs.counters().inodes).toBe(base + 1);
    pfs.forget(ctx, t.entry.nodeid, 1n);
    await pfs.release(ctx, t.entry.nodeid, t.open.fh, O_RDWR, 0n, false);
    expect(pfs.counters().inodes).toBe(base);
    expect(await errnoOf(pfs.tmpfile(ctx, 424242n, 0o600, O_RDWR, 0))).toBe('ESTALE');
  });
});

// ====================================================================== directories

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
    await pfs.destroy();
    ({ pfs, cap } = makeFs(root, { fdBudget: 4 }));
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

// ====================================================================== statfs, xattrs, access

describe('statfs, syncfs', () => {
  it('statfs equals the host statfs', async () => {
    const s = await pfs.statfs(ctx, 1n);
    const h = fs.statfsSync(root, { bigint: true });
    expect(BigInt(s.bsize)).toBe(h.bsize);
    expect(s.blocks).toBe(h.blocks);
    expect(s.files).toBe(h.files);
    expect(s.namelen).toBe(255);
    expect(Number(s.bfree - h.bfree)).toBeLessThan(1024);
    expect(s.bavail).toBeLessThanOrEqual(s.bfree);
    fs.writeFileSync(P('f'), '');
    expect((await pfs.statfs(ctx, (await look('f')).nodeid)).blocks).toBe(h.blocks);
    await pfs.syncfs(ctx, 1n);
  });
});

describe('xattrs', () => {
  const hostGet = (p: string, name: string): string => {
    try {
      const b = Buffer.alloc(65536);
      return b.subarray(0, sys.lgetxattr(B(p), B(name), b)).toString();
    } catch (e) {
      return (e as { code: string }).code;
    }
  };

  it('set, get (size probe, value, ERANGE), list, remove, ENODATA; flags as the host', async () => {
    fs.writeFileSync(P('f'), '');
    const f = (await look('f')).nodeid;
    await pfs.setxattr(ctx, f, B('user.a'), B('alpha'), 0);
    await pfs.setxattr(ctx, f, B('user.empty'), Buffer.alloc(0), 0);
    expect(hostGet(P('f'), 'user.a')).toBe('alpha');
    expect(size(await pfs.getxattr(ctx, f, B('user.a'), 0))).toBe(5);
    expect(value(await pfs.getxattr(ctx, f, B('user.a'), 5)).toString()).toBe('alpha');
    expect(value(await pfs.getxattr(ctx, f, B('user.a'), 100)).toString()).toBe('alpha');
    expect(value(await pfs.getxattr(ctx, f, B('user.empty'), 10)).length).toBe(0);
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.a'), 4))).toBe(host(() => sys.lgetxattr(B(P('f')), B('user.a'), Buffer.alloc(4))));
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.a'), 4))).toBe('ERANGE');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.none'), 0))).toBe(host(() => sys.lgetxattr(B(P('f')), B('user.none'), null)));
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.none'), 0))).toBe('ENODATA');
    const listSize = size(await pfs.listxattr(ctx, f, 0));
    expect(listSize).toBe(sys.listxattr(B(P('f')), null));
    const list = value(await pfs.listxattr(ctx, f, listSize)).toString().split('\0').filter(Boolean);
    expect(list.filter((n) => n.startsWith('user.')).sort()).toEqual(['user.a', 'user.empty']);
    expect(await errnoOf(pfs.listxattr(ctx, f, 3))).toBe('ERANGE');
    expect(await errnoOf(pfs.setxattr(ctx, f, B('user.a'), B('x'), XATTR_CREATE)))
      .toBe(host(() => sys.lsetxattr(B(P('f')), B('user.a'), B('x'), XATTR_CREATE)));
    expect(await errnoOf(pfs.setxattr(ctx, f, B('user.new'), B('x'), XATTR_REPLACE)))
      .toBe(host(() => sys.lsetxattr(B(P('f')), B('user.new'), B('x'), XATTR_REPLACE)));
    await pfs.setxattr(ctx, f, B('user.a'), B('beta'), XATTR_REPLACE);
    expect(hostGet(P('f'), 'user.a')).toBe('beta');
    await pfs.removexattr(ctx, f, B('user.a'));
    expect(hostGet(P('f'), 'user.a')).toBe('ENODATA');
    expect(await errnoOf(pfs.removexattr(ctx, f, B('user.a')))).toBe(host(() => sys.removexattr(B(P('f')), B('user.a'))));
    expect(await errnoOf(pfs.getxattr(ctx, f, B(''), 0))).toBe('EINVAL');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.' + 'n'.repeat(251)), 0))).toBe(host(() => sys.lgetxattr(B(P('f')), B('user.' + 'n'.repeat(251)), null)));
    expect(await errnoOf(pfs.setxattr(ctx, f, B('nonamespace'), B('v'), 0))).toBe(host(() => sys.lsetxattr(B(P('f')), B('nonamespace'), B('v'), 0)));
  });

  it('while the file is open (read through its fd): values, ENODATA, ERANGE and host changes as the host; after release as before', async () => {
    fs.writeFileSync(P('o'), 'data');
    const f = (await look('o')).nodeid;
    const o = await pfs.open(ctx, f, O_RDWR);
    expect(await errnoOf(pfs.getxattr(ctx, f, B('security.capability'), 0))).toBe(host(() => sys.lgetxattr(B(P('o')), B('security.capability'), null)));
    sys.lsetxattr(B(P('o')), B('user.k'), B('one'), 0);
    expect(size(await pfs.getxattr(ctx, f, B('user.k'), 0))).toBe(3);
    expect(value(await pfs.getxattr(ctx, f, B('user.k'), 3)).toString()).toBe('one');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.k'), 2))).toBe('ERANGE');
    sys.lsetxattr(B(P('o')), B('user.k'), B('second'), 0);
    expect(value(await pfs.getxattr(ctx, f, B('user.k'), 64)).toString()).toBe('second');
    await pfs.release(ctx, f, o.fh, O_RDWR, 0n, false);
    expect(value(await pfs.getxattr(ctx, f, B('user.k'), 64)).toString()).toBe('second');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.none'), 0))).toBe('ENODATA');
  });

  it('on a directory, a symlink (user.* EPERM as the host) and a FIFO; trusted.* as root', async () => {
    fs.mkdirSync(P('d'));
    fs.symlinkSync('d', P('l'));
    sys.mknodat(AT_FDCWD, B(P('p')), S_IFIFO | 0o600, 0n);
    const d = (await look('d')).nodeid;
    const l = (await look('l')).nodeid;
    const p = (await look('p')).nodeid;
    await pfs.setxattr(ctx, d, B('user.k'), B('dir'), 0);
    expect(hostGet(P('d'), 'user.k')).toBe('dir');
    for (const [id, rel] of [[l, 'l'], [p, 'p']] as const) {
      expect(await errnoOf(pfs.setxattr(ctx, id, B('user.k'), B('v'), 0))).toBe(host(() => sys.lsetxattr(B(P(rel)), B('user.k'), B('v'), 0)));
      if (isRoot) {
        await pfs.setxattr(ctx, id, B('trusted.k'), B(`t-${rel}`), 0);
        expect(hostGet(P(rel), 'trusted.k')).toBe(`t-${rel}`);
        expect(value(await pfs.getxattr(ctx, id, B('trusted.k'), 100)).toString()).toBe(`t-${rel}`);
        expect(value(await pfs.listxattr(ctx, id, 1000)).toString()).toContain('trusted.k\0');
        await pfs.removexattr(ctx, id, B('trusted.k'));
        expect(hostGet(P(rel), 'trusted.k')).toBe('ENODATA');
      }
    }
    // the symlink's target was never touched
    expect(hostGet(P('d'), 'trusted.k')).toBe('ENODATA');
  });

  it('xattr: false answers ENOSYS', async () => {
    await pfs.destroy();
    ({ pfs, cap } = makeFs(root, { xattr: false }));
    expect(await errnoOf(pfs.getxattr(ctx, 1n, B('user.a'), 0))).toBe('ENOSYS');
    expect(await errnoOf(pfs.listxattr(ctx, 1n, 0))).toBe('ENOSYS');
  });
});

describe('access', () => {
  it('as the host for the server credentials', async () => {
    fs.writeFileSync(P('f'), '');
    fs.chmodSync(P('f'), 0o644);
    const f = (await look('f')).nodeid;
    for (const m of [fs.constants.F_OK, fs.constants.R_OK, fs.constants.W_OK, fs.constants.X_OK, fs.constants.R_OK | fs.constants.X_OK]) {
      expect([m, await errnoOf(pfs.access(ctx, f, m))]).toEqual([m, host(() => fs.accessSync(P('f'), m))]);
    }
    fs.chmodSync(P('f'), 0o744);
    expect(await errnoOf(pfs.access(ctx, f, fs.constants.X_OK))).toBe('OK');
  });

  it.runIf(isRoot)('for another requester: owner, group and other bits', async () => {
    fs.writeFileSync(P('f'), '');
    fs.chownSync(P('f'), 1234, 5678);
    const f = (await look('f')).nodeid;
    const stranger: Context = { uid: 4000, gid: 4000, pid: 1, unique: 1n };
    const member: Context = { uid: 4001, gid: 5678, pid: 1, unique: 1n };
    fs.chmodSync(P('f'), 0o640);
    expect(await errnoOf(pfs.access(other, f, fs.constants.R_OK | fs.constants.W_OK))).toBe('OK');
    expect(await errnoOf(pfs.access(other, f, fs.constants.X_OK))).toBe('EACCES');
    expect(await errnoOf(pfs.access(member, f, fs.constants.R_OK))).toBe('OK');
    expect(await errnoOf(pfs.access(member, f, fs.constants.W_OK))).toBe('EACCES');
    expect(await errnoOf(pfs.access(stranger, f, fs.constants.R_OK))).toBe('EACCES');
    expect(await errnoOf(pfs.access(stranger, f, fs.constants.F_OK))).toBe('OK');
  });
});

// ====================================================================== locks

function settled(p: Promise<unknown>): () => boolean {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  return () => done;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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
      expect(host(() => sys.ofdSetlk(hfd, F_WRLCK, SEEK_SET, 0, 1))).toBe('EAGAIN');
      expect(host(() => sys.ofdSetlk(hfd, F_RDLCK, SEEK_SET, 50, 1))).toBe('OK');
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
      expect(host(() => sys.flock(hfd, 1 /* LOCK_SH */ | 4 /* LOCK_NB */))).toBe('EAGAIN');
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
    await pfs.destroy();
    ({ pfs, cap } = makeFs(root, { fdBudget: 4 }));
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

// ====================================================================== credentials

describe.runIf(isRoot)('credentials: files made for a non-root requester belong to it', () => {
  it('create, mkdir, symlink, mknod, tmpfile with ctx 1234:5678', async () => {
    const c = await pfs.create(other, 1n, B('f'), 0o644, O_RDWR, 0);
    await pfs.mkdir(other, 1n, B('d'), 0o755, 0);
    await pfs.symlink(other, B('f'), 1n, B('l'));
    await pfs.mknod(other, 1n, B('p'), S_IFIFO | 0o600, 0, 0);
    for (const n of ['f', 'd', 'l', 'p']) {
      const st = fs.lstatSync(P(n));
      expect([n, st.uid, st.gid]).toEqual([n, 1234, 5678]);
    }
    expect([c.entry.attr.uid, c.entry.attr.gid]).toEqual([1234, 5678]);
    expect((await look('l')).attr.uid).toBe(1234);
    const t = await pfs.tmpfile(other, 1n, 0o600, O_RDWR, 0);
    expect([t.entry.attr.uid, t.entry.attr.gid]).toEqual([1234, 5678]);
    // root's own requests stay root's
    await pfs.mkdir(ctx, 1n, B('r'), 0o755, 0);
    expect(fs.statSync(P('r')).uid).toBe(0);
  });

  it('a setgid parent keeps its group; the uid is the requester', async () => {
    fs.mkdirSync(P('sg'));
    fs.chownSync(P('sg'), 0, 4444);
    fs.chmodSync(P('sg'), 0o2777);
    const sg = (await look('sg')).nodeid;
    await pfs.create(other, sg, B('f'), 0o644, O_RDWR, 0);
    await pfs.mkdir(other, sg, B('d'), 0o755, 0);
    await pfs.symlink(other, B('f'), sg, B('l'));
    await pfs.mknod(other, sg, B('p'), S_IFIFO | 0o600, 0, 0);
    for (const n of ['f', 'd', 'l', 'p']) {
      const st = fs.lstatSync(P(`sg/${n}`));
      expect([n, st.uid, st.gid]).toEqual([n, 1234, 4444]);
    }
    expect(fs.statSync(P('sg/d')).mode & S_IFDIR & 0o2000).toBe(0);
    expect(fs.statSync(P('sg/d')).mode & 0o2000).toBe(0o2000);
  });

  it('create without O_EXCL of an existing file does not give it to the requester', async () => {
    fs.writeFileSync(P('rootfile'), 'secret');
    fs.chmodSync(P('rootfile'), 0o644);
    // the kernel sends CREATE for a name it believes absent; the host may have made it meanwhile
    const c = await pfs.create(other, 1n, B('rootfile'), 0o666, O_RDWR, 0);
    const st = fs.statSync(P('rootfile'));
    expect([st.uid, st.gid]).toEqual([0, 0]);
    expect([c.entry.attr.uid, c.entry.attr.gid]).toEqual([0, 0]);
    expect(fs.readFileSync(P('rootfile'), 'utf8')).toBe('secret');
    await pfs.release(other, c.entry.nodeid, c.open.fh, O_RDWR, 0n, false);
  });
});

