/**
 * Open files of the filesystem core: open, create, tmpfile, read, write, flush, fsync, fallocate,
 * lseek, copyFileRange, release, and fh checks.
 * PassthroughFs driven through the FileSystem interface on a temp dir (../helpers/fs-fixture.ts),
 * every result compared with what the host says (fs.*Sync on the same tree, or the sys addon).
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { sys, F_WRLCK, O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, SEEK_DATA, SEEK_HOLE, SEEK_SET } from '../../src/sys/syscalls.js';
import { codeOf, errnoOf, errnoOfSync } from '../helpers/errno.js';
import { B, ctx, pfs, P, look, openFile, expectHostAttr, lock, useFs } from '../helpers/fs-fixture.js';

const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;

useFs();

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
      .toBe(errnoOfSync(() => fs.openSync(P('f'), 'wx')));
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
      expect(await errnoOf(pfs.read(ctx, w.nodeid, w.fh, 0, 1))).toBe(errnoOfSync(() => fs.readSync(hw, Buffer.alloc(1), 0, 1, 0)));
      expect(await errnoOf(pfs.write(ctx, r.nodeid, r.fh, 0, B('x'), 0))).toBe(errnoOfSync(() => fs.writeSync(hr, 'x', 0)));
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
        return codeOf(e);
      }
    };
    const { nodeid, fh } = await openFile('f', O_RDONLY);
    const ours = async (off: bigint, wh: number): Promise<string | bigint> => {
      try {
        return await pfs.lseek(ctx, nodeid, fh, off, wh);
      } catch (e) {
        return codeOf(e);
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
