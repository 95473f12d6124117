import { statSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import {
  AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, O_CLOEXEC, O_CREAT, O_PATH, O_RDWR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, ST, STAT_LEN,
  STATFS_LEN, STATX_BASIC_STATS, STATX_BTIME, STATX_DIOALIGN, STATX_MNT_ID, UTIME_NOW, UTIME_OMIT, decodeStat,
  statAt, statfsFd, sys,
} from '../../src/sys/syscalls.js';
import { b, EMPTY, expectErrno, useTmpDir } from './util.js';

describe('statx / fstatfs / utimensat', () => {
  const t = useTmpDir();

  it('statx fills every field, matching node:fs stat with bigint', () => {
    writeFileSync(t.path('f'), 'hello world');
    const out = new BigUint64Array(STAT_LEN);
    sys.statx(t.fd, b('f'), 0, STATX_BASIC_STATS | STATX_BTIME | STATX_MNT_ID | STATX_DIOALIGN, out);
    const st = decodeStat(out);
    const ref = statSync(t.path('f'), { bigint: true });
    expect(st.mask & STATX_BASIC_STATS).toBe(STATX_BASIC_STATS);
    expect(st.mask & STATX_BTIME).toBe(STATX_BTIME); // ext4 has birth times
    expect(st.mask & STATX_MNT_ID).toBe(STATX_MNT_ID);
    expect(st.ino).toBe(ref.ino);
    expect(st.size).toBe(11n);
    expect(st.mode).toBe(Number(ref.mode));
    expect(st.nlink).toBe(1);
    expect(st.uid).toBe(Number(ref.uid));
    expect(st.gid).toBe(Number(ref.gid));
    expect(st.blksize).toBe(Number(ref.blksize));
    expect(st.blocks).toBe(ref.blocks);
    expect(st.mtime.sec * 1_000_000_000n + BigInt(st.mtime.nsec)).toBe(ref.mtimeNs);
    expect(st.ctime.sec * 1_000_000_000n + BigInt(st.ctime.nsec)).toBe(ref.ctimeNs);
    expect(st.btime!.sec * 1_000_000_000n + BigInt(st.btime!.nsec)).toBe(ref.birthtimeNs);
    expect(BigInt(st.devMajor * 256 + st.devMinor)).toBe(ref.dev); // small device numbers only
    expect(st.mntId).toBeGreaterThan(0n);
    // 26 slots, the last ones are the DIO alignments (0 when the file does not support direct I/O)
    expect(out.length).toBe(26);
    expect(typeof out[ST.DIO_MEM_ALIGN]).toBe('bigint');
  });

  it('nanosecond times, negative seconds and 64-bit sizes round-trip', () => {
    const fd = t.track(sys.openat(t.fd, b('f'), O_RDWR | O_CREAT | O_CLOEXEC, 0o600));
    sys.ftruncate(fd, 2 ** 40 + 3); // sparse, 1 TiB + 3
    sys.utimensat(t.fd, b('f'), -1_234_567, 123_456_789, 4_102_444_800, 999_999_999, 0); // 1969 / 2100
    const st = statAt(fd, EMPTY, AT_EMPTY_PATH);
    expect(st.atime).toEqual({ sec: -1_234_567n, nsec: 123_456_789 });
    expect(st.mtime).toEqual({ sec: 4_102_444_800n, nsec: 999_999_999 });
    expect(st.size).toBe(2n ** 40n + 3n);
  });

  it('utimensat UTIME_NOW / UTIME_OMIT, AT_EMPTY_PATH on an O_PATH fd', () => {
    writeFileSync(t.path('f'), '');
    sys.utimensat(t.fd, b('f'), 100, 5, 200, 6, 0);
    const before = Date.now() / 1000;
    sys.utimensat(t.fd, b('f'), 0, UTIME_OMIT, 0, UTIME_NOW, 0);
    let st = statAt(t.fd, b('f'), 0);
    expect(st.atime).toEqual({ sec: 100n, nsec: 5 });
    expect(Number(st.mtime.sec)).toBeGreaterThanOrEqual(Math.floor(before) - 1);
    const p = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    sys.utimensat(p, EMPTY, 7, 8, 0, UTIME_OMIT, AT_EMPTY_PATH);
    st = statAt(p, EMPTY, AT_EMPTY_PATH);
    expect(st.atime).toEqual({ sec: 7n, nsec: 8 });
    expectErrno(() => sys.utimensat(t.fd, b('f'), 0, 2_000_000_000, 0, 0, 0), 'EINVAL', 'utimensat');
    symlinkSync('f', t.path('l'));
    sys.utimensat(t.fd, b('l'), 1, 0, 1, 0, AT_SYMLINK_NOFOLLOW);
    expect(statAt(t.fd, b('l'), AT_SYMLINK_NOFOLLOW).mtime.sec).toBe(1n);
    expect(statAt(t.fd, b('f'), 0).atime.sec).toBe(7n);
  });

  it('statx with AT_SYMLINK_NOFOLLOW stats the link, without it the target; ENOENT', () => {
    mkdirSync(t.path('d'));
    symlinkSync('d', t.path('l'));
    const out = new BigUint64Array(STAT_LEN);
    sys.statx(t.fd, b('l'), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, out);
    expect(decodeStat(out).mode & S_IFMT).toBe(S_IFLNK);
    sys.statx(t.fd, b('l'), 0, STATX_BASIC_STATS, out);
    const st = decodeStat(out);
    expect(st.mode & S_IFMT).toBe(S_IFDIR);
    expect(st.ino).toBe(statAt(t.fd, b('d'), 0).ino);
    expectErrno(() => sys.statx(t.fd, b('nope'), 0, STATX_BASIC_STATS, out), 'ENOENT', 'statx');
  });

  it('statAt on the dirfd itself and on a regular file', () => {
    writeFileSync(t.path('f'), 'x');
    expect(statAt(t.fd, EMPTY, AT_EMPTY_PATH).mode & S_IFMT).toBe(S_IFDIR);
    expect(statAt(t.fd, b('f'), 0).mode & S_IFMT).toBe(S_IFREG);
  });

  it('fstatfs / statfsFd', () => {
    const out = new BigUint64Array(STATFS_LEN);
    sys.fstatfs(t.fd, out);
    const sf = statfsFd(t.fd);
    expect(sf.type).toBe(0xef53); // EXT4_SUPER_MAGIC: /tmp is ext4 here
    expect(sf.bsize).toBeGreaterThan(0);
    expect(sf.blocks).toBeGreaterThan(0n);
    expect(sf.bavail).toBeLessThanOrEqual(sf.bfree);
    expect(sf.namelen).toBe(255);
    expect(sf.frsize).toBe(sf.bsize);
    expect(sf.fsid[0] + sf.fsid[1]).toBeGreaterThan(0);
    expectErrno(() => sys.fstatfs(-1, out), 'EBADF', 'fstatfs');
  });
});
