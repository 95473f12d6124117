/**
 * Entries of the filesystem core: lookup, forget, mknod/mkdir/symlink, unlink/rmdir, rename, link,
 * and who owns what a requester creates.
 * PassthroughFs driven through the FileSystem interface on a temp dir (../helpers/fs-fixture.ts),
 * every result compared with what the host says (fs.*Sync on the same tree, or the sys addon).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sys, AT_FDCWD, O_RDONLY, O_RDWR, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, S_IFDIR, S_IFIFO, S_IFREG } from '../../src/sys/syscalls.js';
import { E, FsError } from '../../src/errors.js';
import { errnoOf, errnoOfSync, found } from '../helpers/errno.js';
import {
  B, ctx, other, isRoot, root, pfs, cap, P, look, openFile, expectHostAttr, tmpdir, remakeFs, useFs,
} from '../helpers/fs-fixture.js';

useFs();

/** the device number of anything but a device special file */
const NODEV = { major: 0, minor: 0 };

describe('lookup', () => {
  it('finds files, directories and symlinks with the host attributes', async () => {
    fs.writeFileSync(P('f'), 'hello');
    fs.mkdirSync(P('d'));
    fs.symlinkSync('f', P('l'));
    for (const n of ['f', 'd', 'l']) {
      const e = found(await pfs.lookup(ctx, 1n, B(n)));
      expect(e.nodeid).not.toBe(0n);
      expect(e.nodeid).not.toBe(1n);
      expectHostAttr(e.attr, P(n));
    }
  });

  it('gives the same node id for the same inode: re-lookup and hard links', async () => {
    fs.writeFileSync(P('f'), '');
    fs.linkSync(P('f'), P('g'));
    const a = found(await pfs.lookup(ctx, 1n, B('f')));
    const b = found(await pfs.lookup(ctx, 1n, B('f')));
    const c = found(await pfs.lookup(ctx, 1n, B('g')));
    expect(b.nodeid).toBe(a.nodeid);
    expect(c.nodeid).toBe(a.nodeid);
    expect(b.generation).toBe(a.generation);
  });

  it('a re-lookup of a known name (no open) follows the host: fresh attributes, a replaced name is another node, a symlink stays a symlink', async () => {
    fs.writeFileSync(P('k'), 'one');
    fs.mkdirSync(P('kd'));
    fs.symlinkSync('k', P('kl'));
    const k = found(await pfs.lookup(ctx, 1n, B('k')));
    const kd = found(await pfs.lookup(ctx, 1n, B('kd')));
    const kl = found(await pfs.lookup(ctx, 1n, B('kl')));
    fs.appendFileSync(P('k'), 'more');
    fs.chmodSync(P('kd'), 0o700);
    for (const [n, e] of [['k', k], ['kd', kd], ['kl', kl]] as const) {
      const again = found(await pfs.lookup(ctx, 1n, B(n)));
      expect(again.nodeid).toBe(e.nodeid);
      expectHostAttr(again.attr, P(n));
    }
    // replaced by the host (write + rename over): the name is another inode now
    fs.writeFileSync(P('k.new'), 'replacement');
    fs.renameSync(P('k.new'), P('k'));
    const r = found(await pfs.lookup(ctx, 1n, B('k')));
    expect(r.nodeid).not.toBe(k.nodeid);
    expectHostAttr(r.attr, P('k'));
    // a directory swapped for a file of the same name
    fs.rmSync(P('kd'), { recursive: true });
    fs.writeFileSync(P('kd'), 'file now');
    const f = found(await pfs.lookup(ctx, 1n, B('kd')));
    expect(f.nodeid).not.toBe(kd.nodeid);
    expect(f.attr.mode & 0o170000).toBe(0o100000);
    fs.rmSync(P('kd'));
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('kd')))).toBe('ENOENT');
  });

  it("'.' is the directory, '..' its parent, '..' of the root is the root", async () => {
    fs.mkdirSync(P('d/e'), { recursive: true });
    const d = await look('d');
    const e = found(await pfs.lookup(ctx, d.nodeid, B('e')));
    expect((found(await pfs.lookup(ctx, d.nodeid, B('.')))).nodeid).toBe(d.nodeid);
    expect((found(await pfs.lookup(ctx, e.nodeid, B('..')))).nodeid).toBe(d.nodeid);
    expect((found(await pfs.lookup(ctx, d.nodeid, B('..')))).nodeid).toBe(1n);
    const up = found(await pfs.lookup(ctx, 1n, B('..')));
    expect(up.nodeid).toBe(1n);
    expectHostAttr(up.attr, root);
    expectHostAttr((found(await pfs.lookup(ctx, 1n, B('.')))).attr, root);
  });

  it('ENOENT for a missing name, ENOTDIR below a file (as the host)', async () => {
    fs.writeFileSync(P('f'), '');
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('missing')))).toBe(errnoOfSync(() => fs.lstatSync(P('missing'))));
    const f = await look('f');
    expect(await errnoOf(pfs.lookup(ctx, f.nodeid, B('x')))).toBe(errnoOfSync(() => fs.lstatSync(P('f/x'))));
    expect(await errnoOf(pfs.lookup(ctx, f.nodeid, B('x')))).toBe('ENOTDIR');
  });

  it('a missing name is answered as a value: the lookup resolves to the ENOENT FsError, counts nothing, and a later create finds the name', async () => {
    fs.mkdirSync(P('d'));
    const d = await look('d');
    const base = pfs.counters().inodes;
    // in the root (the fast path's directory from the start) and in a subdirectory, repeatedly
    for (const [parent, name] of [[1n, 'nope'], [d.nodeid, 'nope'], [d.nodeid, 'nope']] as const) {
      const r = await pfs.lookup(ctx, parent, B(name));
      expect(r).toBeInstanceOf(FsError);
      expect((r as FsError).errno).toBe(E.ENOENT);
    }
    expect(pfs.counters().inodes).toBe(base);
    // the name made on the host is found at once (nothing negative is remembered)
    fs.writeFileSync(P('d/nope'), 'x');
    const e = found(await pfs.lookup(ctx, d.nodeid, B('nope')));
    expectHostAttr(e.attr, P('d/nope'));
    expect(pfs.counters().inodes).toBe(base + 1);
  });

  it("names with '/', empty, NUL: EINVAL; 256 bytes: ENAMETOOLONG; 255 bytes work", async () => {
    fs.mkdirSync(P('a'));
    fs.writeFileSync(P('a/b'), '');
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('a/b')))).toBe('EINVAL');
    expect(await errnoOf(pfs.lookup(ctx, 1n, B('')))).toBe('EINVAL');
    expect(await errnoOf(pfs.lookup(ctx, 1n, Buffer.from('a\0b')))).toBe('EINVAL');
    const long = 'x'.repeat(256);
    expect(await errnoOf(pfs.lookup(ctx, 1n, B(long)))).toBe(errnoOfSync(() => fs.lstatSync(P(long))));
    expect(await errnoOf(pfs.lookup(ctx, 1n, B(long)))).toBe('ENAMETOOLONG');
    const ok = 'y'.repeat(255);
    fs.writeFileSync(P(ok), '');
    expectHostAttr((found(await pfs.lookup(ctx, 1n, B(ok)))).attr, P(ok));
  });

  it('non-UTF-8 names are bytes', async () => {
    const name = Buffer.from([0xff, 0xfe, 0x41]);
    fs.writeFileSync(Buffer.concat([Buffer.from(root + '/'), name]), 'b');
    const e = found(await pfs.lookup(ctx, 1n, name));
    expect(e.attr.size).toBe(1n);
  });

  it('an unknown parent node id is refused', async () => {
    expect(await errnoOf(pfs.lookup(ctx, 987654n, B('x')))).toBe('ESTALE');
  });
});

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
    // each counted for the stats: a count went wrong
    expect(pfs.counters()).toMatchObject({ forgetUnderflow: 2, forgetUnknown: 0 });
  });

  it('unknown ids and the root are ignored', async () => {
    expect(() => pfs.forget(ctx, 999_999n, 1n)).not.toThrow();
    expect(() => pfs.forget(ctx, 0n, 1n)).not.toThrow();
    expect(() => pfs.forget(ctx, 1n, 1000n)).not.toThrow();
    // unknown ids are counted (the root's count is the session's, not a mistake)
    expect(pfs.counters()).toMatchObject({ forgetUnknown: 2, forgetUnderflow: 0 });
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
    // by-path reopen re-walks the stored parent/name links
    await remakeFs({ reopen: 'path', fdBudget: 4 });
    fs.writeFileSync(P('aaa'), 'A');
    fs.writeFileSync(P('zzz'), 'Z');
    const names = ['aaa', 'ddd', 'fff', 'sss', 'lll'].map((n) => Buffer.from(n));
    const ids = [
      (found(await pfs.lookup(ctx, 1n, names[0]!))).nodeid,
      (await pfs.mkdir(ctx, 1n, names[1]!, 0o755, 0)).nodeid,
      (await pfs.mknod(ctx, 1n, names[2]!, S_IFIFO | 0o600, NODEV, 0)).nodeid,
      (await pfs.symlink(ctx, B('aaa'), 1n, names[3]!)).nodeid,
    ];
    const z = found(await pfs.lookup(ctx, 1n, B('zzz')));
    // link re-points the node's parent link at its new name
    ids.push((await pfs.link(ctx, z.nodeid, 1n, names[4]!)).nodeid);
    expect(ids[4]).toBe(z.nodeid);
    // the transport reuses its request buffers for the next requests
    for (const b of names) b.fill(0x71); // 'qqq'
    // push every inode fd out of the cache, then use the nodes again (reopen by path)
    for (let i = 0; i < 12; i++) {
      fs.writeFileSync(P(`pad${i}`), '');
      found(await pfs.lookup(ctx, 1n, B(`pad${i}`)));
    }
    expect(pfs.counters().evictions).toBeGreaterThan(0);
    for (const [i, id] of ids.entries()) expect([i, await errnoOf(pfs.getattr(ctx, id))]).toEqual([i, 'OK']);
    expect(pfs.counters().reopenByPath).toBeGreaterThan(0);
  });
});

describe('symlink, mknod, mkdir', () => {
  it('symlink creates a link with the target stored as given; EEXIST; bad targets refused', async () => {
    const e = await pfs.symlink(ctx, B('../../escape'), 1n, B('l'));
    expectHostAttr(e.attr, P('l'));
    expect(fs.readlinkSync(P('l'))).toBe('../../escape');
    expect(await errnoOf(pfs.symlink(ctx, B('x'), 1n, B('l')))).toBe(errnoOfSync(() => fs.symlinkSync('x', P('l'))));
    // an empty target: the host says ENOENT (the kernel never sends one); the server refuses it too
    expect(errnoOfSync(() => fs.symlinkSync('', P('e')))).toBe('ENOENT');
    expect(await errnoOf(pfs.symlink(ctx, B(''), 1n, B('e')))).not.toBe('OK');
    expect(await errnoOf(pfs.symlink(ctx, Buffer.from('a\0b'), 1n, B('e')))).toBe('EINVAL');
    expect(await errnoOf(pfs.symlink(ctx, B('x'), 1n, B('a/b')))).toBe('EINVAL');
    expect(fs.existsSync(P('e'))).toBe(false);
  });

  it('mknod makes a FIFO and a regular file with the umask applied; EEXIST', async () => {
    const e = await pfs.mknod(ctx, 1n, B('p'), S_IFIFO | 0o666, NODEV, 0o022);
    const st = fs.lstatSync(P('p'));
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o777).toBe(0o644);
    expectHostAttr(e.attr, P('p'));
    const r = await pfs.mknod(ctx, 1n, B('r'), S_IFREG | 0o640, NODEV, 0);
    expect(fs.lstatSync(P('r')).isFile()).toBe(true);
    expectHostAttr(r.attr, P('r'));
    expect(await errnoOf(pfs.mknod(ctx, 1n, B('p'), S_IFIFO | 0o666, NODEV, 0))).toBe('EEXIST');
    // FIFOs are never opened by the server
    expect(await errnoOf(pfs.open(ctx, e.nodeid, O_RDONLY))).not.toBe('OK');
  });

  it.runIf(isRoot)('mknod of a character device makes that device number (a minor above 255 too)', async () => {
    const e = await pfs.mknod(ctx, 1n, B('c'), 0o020000 | 0o600, { major: 1, minor: 259 }, 0);
    expect([e.attr.rdevMajor, e.attr.rdevMinor]).toEqual([1, 259]);
    expectHostAttr(e.attr, P('c'));
  });

  it('mkdir with the umask; EEXIST; ENOTDIR under a file', async () => {
    const e = await pfs.mkdir(ctx, 1n, B('d'), 0o777, 0o027);
    expect(fs.statSync(P('d')).mode & 0o777).toBe(0o750);
    expectHostAttr(e.attr, P('d'));
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('d'), 0o777, 0))).toBe(errnoOfSync(() => fs.mkdirSync(P('d'))));
    const f = await pfs.create(ctx, 1n, B('f'), 0o644, O_RDWR, 0);
    expect(await errnoOf(pfs.mkdir(ctx, f.entry.nodeid, B('x'), 0o777, 0))).toBe(errnoOfSync(() => fs.mkdirSync(P('f/x'))));
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('.'), 0o777, 0))).toBe('EINVAL');
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('..'), 0o777, 0))).toBe('EINVAL');
    expect(await errnoOf(pfs.mkdir(ctx, 1n, B('z'.repeat(256)), 0o777, 0))).toBe(errnoOfSync(() => fs.mkdirSync(P('z'.repeat(256)))));
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
    expect(await errnoOf(pfs.unlink(ctx, 1n, B('f')))).toBe(errnoOfSync(() => fs.unlinkSync(P('f'))));
    expect(await errnoOf(pfs.unlink(ctx, 1n, B('d')))).toBe(errnoOfSync(() => fs.unlinkSync(P('d'))));
    expect(await errnoOf(pfs.unlink(ctx, 1n, B('a/b')))).toBe('EINVAL');
  });

  it('rmdir removes an empty directory; ENOTEMPTY, ENOTDIR, ENOENT as the host', async () => {
    fs.mkdirSync(P('d/e'), { recursive: true });
    fs.writeFileSync(P('f'), '');
    expect(await errnoOf(pfs.rmdir(ctx, 1n, B('d')))).toBe(errnoOfSync(() => fs.rmdirSync(P('d'))));
    expect(await errnoOf(pfs.rmdir(ctx, 1n, B('f')))).toBe(errnoOfSync(() => fs.rmdirSync(P('f'))));
    expect(await errnoOf(pfs.rmdir(ctx, 1n, B('nope')))).toBe(errnoOfSync(() => fs.rmdirSync(P('nope'))));
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
    expect(await errnoOf(pfs.rename(ctx, 1n, B('a'), 1n, B('c'), 0))).toBe(errnoOfSync(() => fs.renameSync(P('a'), P('c'))));
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
      .toBe(errnoOfSync(() => fs.renameSync(P('x/src'), P('y/full'))));
    await pfs.rename(ctx, x.nodeid, B('src'), y.nodeid, B('empty'), 0);
    expect(fs.readFileSync(P('y/empty/f'), 'utf8')).toBe('f');
    // the moved directory's parent link follows it
    expect((found(await pfs.lookup(ctx, src.nodeid, B('..')))).nodeid).toBe(y.nodeid);
    // a directory into its own subdirectory
    expect(await errnoOf(pfs.rename(ctx, 1n, B('y'), src.nodeid, B('in'), 0))).toBe(errnoOfSync(() => fs.renameSync(P('y'), P('y/empty/in'))));
    expect(await errnoOf(pfs.rename(ctx, 1n, B('y'), src.nodeid, B('in'), 0))).toBe('EINVAL');
  });

  it('RENAME_NOREPLACE: EEXIST over an existing name, a move otherwise', async () => {
    fs.writeFileSync(P('a'), 'A');
    fs.writeFileSync(P('b'), 'B');
    expect(await errnoOf(pfs.rename(ctx, 1n, B('a'), 1n, B('b'), RENAME_NOREPLACE)))
      .toBe(errnoOfSync(() => sys.renameat2(AT_FDCWD, B(P('a')), AT_FDCWD, B(P('b')), RENAME_NOREPLACE)));
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
      .toBe(errnoOfSync(() => sys.renameat2(AT_FDCWD, B(P('f')), AT_FDCWD, B(P('none')), RENAME_EXCHANGE)));
    expect(await errnoOf(pfs.rename(ctx, 1n, B('f'), 1n, B('d'), RENAME_EXCHANGE | RENAME_NOREPLACE))).toBe('EINVAL');
  });

  it('RENAME_WHITEOUT does what the host does', async () => {
    fs.writeFileSync(P('a'), 'A');
    const hostDir = tmpdir('hfs-ops-host-');
    try {
      fs.writeFileSync(path.join(hostDir, 'a'), 'A');
      const want = errnoOfSync(() => sys.renameat2(AT_FDCWD, B(path.join(hostDir, 'a')), AT_FDCWD, B(path.join(hostDir, 'b')), RENAME_WHITEOUT));
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
    expect(await errnoOf(pfs.link(ctx, d.nodeid, 1n, B('d2')))).toBe(errnoOfSync(() => fs.linkSync(P('d'), P('d2'))));
    expect(await errnoOf(pfs.link(ctx, f.nodeid, d.nodeid, B('g')))).toBe(errnoOfSync(() => fs.linkSync(P('f'), P('d/g'))));
    // a symlink can be hard-linked itself
    fs.symlinkSync('f', P('l'));
    const l = await look('l');
    await pfs.link(ctx, l.nodeid, 1n, B('l2'));
    expect(fs.readlinkSync(P('l2'))).toBe('f');
  });
});

describe.runIf(isRoot)('credentials: files made for a non-root requester belong to it', () => {
  it('create, mkdir, symlink, mknod, tmpfile with ctx 1234:5678', async () => {
    const c = await pfs.create(other, 1n, B('f'), 0o644, O_RDWR, 0);
    await pfs.mkdir(other, 1n, B('d'), 0o755, 0);
    await pfs.symlink(other, B('f'), 1n, B('l'));
    await pfs.mknod(other, 1n, B('p'), S_IFIFO | 0o600, NODEV, 0);
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
    await pfs.mknod(other, sg, B('p'), S_IFIFO | 0o600, NODEV, 0);
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
