import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import {
  AT_EMPTY_PATH, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, O_APPEND, O_CLOEXEC, O_CREAT, O_PATH, O_RDONLY, O_RDWR,
  O_WRONLY, SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET, statAt, sys,
} from '../../src/sys/syscalls.js';
import { b, EMPTY, expectErrno, expectRejectErrno, useTmpDir } from './util.js';

describe('data I/O', () => {
  const t = useTmpDir();
  const create = (name: string, flags = O_RDWR): number =>
    t.track(sys.openat(t.fd, b(name), flags | O_CREAT | O_CLOEXEC, 0o600));

  it('pread/pwrite into Buffer slices', () => {
    const fd = create('f');
    const src = b('..hello world..');
    expect(sys.pwrite(fd, src, 2, 11, 100)).toBe(11);
    const dst = Buffer.alloc(20, 0x2d);
    expect(sys.pread(fd, dst, 4, 5, 106)).toBe(5);
    expect(dst.toString()).toBe('----world-----------');
    expect(sys.pread(fd, dst, 0, 20, 1000)).toBe(0); // EOF
    expect(statAt(fd, EMPTY, AT_EMPTY_PATH).size).toBe(111n);
    // position -1 uses the file offset
    sys.lseek(fd, 100n, SEEK_SET);
    expect(sys.pread(fd, dst, 0, 5, -1)).toBe(5);
    expect(sys.lseek(fd, 0n, SEEK_CUR)).toBe(105n);
  });

  it('pread/pwrite range and fd errors', () => {
    const fd = create('f');
    const buf = Buffer.alloc(8);
    expect(() => sys.pread(fd, buf, 4, 5, 0)).toThrow(RangeError);
    expect(() => sys.pread(fd, buf, 9, 0, 0)).toThrow(RangeError);
    expect(() => sys.pwrite(fd, buf, -1, 1, 0)).toThrow(RangeError);
    expect(() => sys.pwrite(fd, buf, 0, 1, -2)).toThrow(RangeError);
    expect(() => sys.pread(fd, buf, 0, 2 ** 53, 0)).toThrow(RangeError);
    expectErrno(() => sys.pread(-1, buf, 0, 8, 0), 'EBADF', 'pread');
    const ro = t.track(sys.openat(t.fd, b('f'), O_RDONLY | O_CLOEXEC, 0));
    expectErrno(() => sys.pwrite(ro, buf, 0, 8, 0), 'EBADF', 'pwrite');
    const p = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    expectErrno(() => sys.pread(p, buf, 0, 8, 0), 'EBADF', 'pread');
    const dir = t.track(sys.openat(t.fd, b('.'), O_RDONLY | O_CLOEXEC, 0));
    expectErrno(() => sys.pread(dir, buf, 0, 8, 0), 'EISDIR', 'pread');
  });

  it('async variants resolve with counts and reject with errno errors', async () => {
    const fd = create('f');
    await expect(sys.pwriteAsync(fd, b('abcdef'), 1, 4, 10)).resolves.toBe(4);
    const dst = Buffer.alloc(4);
    await expect(sys.preadAsync(fd, dst, 0, 4, 10)).resolves.toBe(4);
    expect(dst.toString()).toBe('bcde');
    await expect(sys.fsyncAsync(fd, false)).resolves.toBeUndefined();
    await expect(sys.fsyncAsync(fd, true)).resolves.toBeUndefined();
    await expect(sys.fallocateAsync(fd, 0, 0, 8192)).resolves.toBeUndefined();
    expect(statAt(fd, EMPTY, AT_EMPTY_PATH).size).toBe(8192n);
    await expectRejectErrno(sys.preadAsync(-1, dst, 0, 4, 0), 'EBADF', 'pread');
    await expectRejectErrno(sys.pwriteAsync(-1, dst, 0, 4, 0), 'EBADF', 'pwrite');
    await expectRejectErrno(sys.fsyncAsync(-1, false), 'EBADF', 'fsync');
    await expectRejectErrno(sys.fsyncAsync(-1, true), 'EBADF', 'fdatasync');
    await expectRejectErrno(sys.fallocateAsync(fd, 0, 0, 0), 'EINVAL', 'fallocate');
    await expectRejectErrno(sys.copyFileRangeAsync(-1, 0, fd, 0, 1, 0), 'EBADF', 'copy_file_range');
    // argument errors are thrown synchronously, not as rejections
    expect(() => sys.preadAsync(fd, dst, 0, 5, 0)).toThrow(RangeError);
  });

  it('many concurrent async reads keep their Buffers alive', async () => {
    const fd = create('f');
    const data = Buffer.alloc(1 << 16);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    sys.pwrite(fd, data, 0, data.length, 0);
    const reads = Array.from({ length: 64 }, (_, i) => {
      const buf = Buffer.alloc(1024);
      return sys.preadAsync(fd, buf, 0, 1024, i * 1024).then((n) => ({ n, buf, i }));
    });
    (globalThis as { gc?: () => void }).gc?.();
    for (const { n, buf, i } of await Promise.all(reads)) {
      expect(n).toBe(1024);
      expect(buf.equals(data.subarray(i * 1024, (i + 1) * 1024))).toBe(true);
    }
  });

  it('pwriteAsync with position -1 appends on an O_APPEND fd', async () => {
    writeFileSync(t.path('log'), 'start;');
    const fd = t.track(sys.openat(t.fd, b('log'), O_WRONLY | O_APPEND | O_CLOEXEC, 0));
    await sys.pwriteAsync(fd, b('one;'), 0, 4, -1);
    sys.pwrite(fd, b('two;'), 0, 4, -1);
    expect(readFileSync(t.path('log'), 'utf8')).toBe('start;one;two;');
  });

  it('copy_file_range with explicit offsets and -1 (file offset)', async () => {
    writeFileSync(t.path('src'), '0123456789');
    const src = t.track(sys.openat(t.fd, b('src'), O_RDONLY | O_CLOEXEC, 0));
    const dst = create('dst');
    expect(await sys.copyFileRangeAsync(src, 2, dst, 0, 5, 0)).toBe(5);
    expect(await sys.copyFileRangeAsync(src, 7, dst, 5, 100, 0)).toBe(3);
    expect(readFileSync(t.path('dst'), 'utf8')).toBe('23456789');
    sys.lseek(src, 1n, SEEK_SET);
    expect(await sys.copyFileRangeAsync(src, -1, dst, 8, 2, 0)).toBe(2);
    expect(sys.lseek(src, 0n, SEEK_CUR)).toBe(3n);
    expect(readFileSync(t.path('dst'), 'utf8')).toBe('2345678912');
    await expectRejectErrno(sys.copyFileRangeAsync(src, 0, dst, 0, 1, 1), 'EINVAL', 'copy_file_range');
  });

  it('SEEK_DATA / SEEK_HOLE on a sparse file; fallocate PUNCH_HOLE', async () => {
    const fd = create('sparse');
    const MiB = 1 << 20;
    sys.pwrite(fd, Buffer.alloc(4096, 1), 0, 4096, MiB);
    sys.ftruncate(fd, 4 * MiB);
    expect(sys.lseek(fd, 0n, SEEK_DATA)).toBe(BigInt(MiB));
    expect(sys.lseek(fd, BigInt(MiB), SEEK_HOLE)).toBe(BigInt(MiB + 4096));
    expect(sys.lseek(fd, 0n, SEEK_HOLE)).toBe(0n);
    expectErrno(() => sys.lseek(fd, BigInt(2 * MiB), SEEK_DATA), 'ENXIO', 'lseek');
    expect(sys.lseek(fd, 0n, SEEK_END)).toBe(BigInt(4 * MiB));
    await sys.fallocateAsync(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MiB, 4096);
    expectErrno(() => sys.lseek(fd, 0n, SEEK_DATA), 'ENXIO', 'lseek');
    expect(statAt(fd, EMPTY, AT_EMPTY_PATH).size).toBe(BigInt(4 * MiB));
    expectErrno(() => sys.lseek(fd, -1n, SEEK_SET), 'EINVAL', 'lseek');
    await expectRejectErrno(sys.fallocateAsync(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), 'EOPNOTSUPP', 'fallocate'); // needs KEEP_SIZE
  });

  it('ftruncate, syncfs (fsync and fdatasync: fsyncAsync above)', () => {
    const fd = create('f');
    sys.ftruncate(fd, 12345);
    expect(statAt(fd, EMPTY, AT_EMPTY_PATH).size).toBe(12345n);
    sys.syncfs(fd);
    expectErrno(() => sys.ftruncate(fd, -1), 'EINVAL', 'ftruncate');
    expectErrno(() => sys.syncfs(-1), 'EBADF', 'syncfs');
  });
});
