import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import {
  AT_EMPTY_PATH, AT_EACCESS, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, F_OK, O_CLOEXEC, O_NOFOLLOW, O_PATH,
  O_RDWR, O_TMPFILE, R_OK, RENAME_EXCHANGE, RENAME_NOREPLACE, S_IFCHR, S_IFIFO, S_IFMT, W_OK, X_OK,
  procFdPath, statAt, sys,
} from '../../src/sys/syscalls.js';
import { b, EMPTY, expectErrno, useTmpDir } from './util.js';

describe('namespace syscalls', () => {
  const t = useTmpDir();

  it('mkdirat / unlinkat (AT_REMOVEDIR)', () => {
    sys.mkdirat(t.fd, b('d'), 0o750);
    expect(statSync(t.path('d')).isDirectory()).toBe(true);
    expectErrno(() => sys.mkdirat(t.fd, b('d'), 0o750), 'EEXIST', 'mkdirat');
    expectErrno(() => sys.unlinkat(t.fd, b('d'), 0), 'EISDIR', 'unlinkat');
    writeFileSync(t.path('d/x'), '');
    expectErrno(() => sys.unlinkat(t.fd, b('d'), AT_REMOVEDIR), 'ENOTEMPTY', 'unlinkat');
    sys.unlinkat(t.fd, b('d/x'), 0);
    sys.unlinkat(t.fd, b('d'), AT_REMOVEDIR);
    expect(existsSync(t.path('d'))).toBe(false);
  });

  it('mknodat FIFO and a char device (root); makedev', () => {
    sys.mknodat(t.fd, b('fifo'), S_IFIFO | 0o600, 0n);
    expect(statAt(t.fd, b('fifo'), 0).mode & S_IFMT).toBe(S_IFIFO);
    expect(sys.makedev(1, 3)).toBe(0x103n);
    // glibc's encoding: mmmM MMmm mmMM Mmmm (12-bit major low part at bit 8, minor low byte at bit 0)
    const ref = (ma: bigint, mi: bigint): bigint =>
      ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
    expect(sys.makedev(0x1234, 0x56789)).toBe(ref(0x1234n, 0x56789n));
    expect(sys.makedev(0xffffffff, 0xffffffff)).toBe(0xffffffffffffffffn);
    if (process.getuid?.() === 0) {
      sys.mknodat(t.fd, b('null'), S_IFCHR | 0o600, sys.makedev(1, 3));
      const st = statAt(t.fd, b('null'), 0);
      expect(st.mode & S_IFMT).toBe(S_IFCHR);
      expect([st.rdevMajor, st.rdevMinor]).toEqual([1, 3]);
    }
    expectErrno(() => sys.mknodat(t.fd, b('fifo'), S_IFIFO | 0o600, 0n), 'EEXIST', 'mknodat');
  });

  it('symlinkat / readlinkat (by name and on an O_PATH fd of the link)', () => {
    const target = Buffer.from([0x2e, 0x2e, 0x2f, 0xff, 0xfe]); // non-UTF-8 target bytes
    sys.symlinkat(target, t.fd, b('l'));
    expect(sys.readlinkat(t.fd, b('l')).equals(target)).toBe(true);
    const fd = t.track(sys.openat(t.fd, b('l'), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0));
    expect(sys.readlinkat(fd, EMPTY).equals(target)).toBe(true);
    const long = Buffer.alloc(4095, 0x61);
    sys.symlinkat(long, t.fd, b('long'));
    expect(sys.readlinkat(t.fd, b('long')).length).toBe(4095);
    writeFileSync(t.path('f'), '');
    expectErrno(() => sys.readlinkat(t.fd, b('f')), 'EINVAL', 'readlinkat');
    expectErrno(() => sys.symlinkat(b('x'), t.fd, b('l')), 'EEXIST', 'symlinkat');
  });

  it('renameat2 plain, RENAME_NOREPLACE and RENAME_EXCHANGE', () => {
    writeFileSync(t.path('a'), 'A');
    writeFileSync(t.path('b'), 'B');
    expectErrno(() => sys.renameat2(t.fd, b('a'), t.fd, b('b'), RENAME_NOREPLACE), 'EEXIST', 'renameat2');
    sys.renameat2(t.fd, b('a'), t.fd, b('b'), RENAME_EXCHANGE);
    expect(readFileSync(t.path('a'), 'utf8')).toBe('B');
    expect(readFileSync(t.path('b'), 'utf8')).toBe('A');
    sys.renameat2(t.fd, b('a'), t.fd, b('c'), RENAME_NOREPLACE);
    expect(readFileSync(t.path('c'), 'utf8')).toBe('B');
    expectErrno(() => sys.renameat2(t.fd, b('a'), t.fd, b('d'), RENAME_EXCHANGE), 'ENOENT', 'renameat2');
    sys.renameat2(t.fd, b('c'), t.fd, b('b'), 0);
    expect(readFileSync(t.path('b'), 'utf8')).toBe('B');
    expectErrno(() => sys.renameat2(t.fd, b('b'), t.fd, b('x'), RENAME_EXCHANGE | RENAME_NOREPLACE), 'EINVAL', 'renameat2');
  });

  it('linkat by name, AT_EMPTY_PATH on an fd, and the /proc/self/fd form', () => {
    writeFileSync(t.path('f'), 'data');
    sys.linkat(t.fd, b('f'), t.fd, b('h1'), 0);
    expect(statAt(t.fd, b('f'), 0).nlink).toBe(2);
    const fd = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    sys.linkat(fd, EMPTY, t.fd, b('h2'), AT_EMPTY_PATH); // needs CAP_DAC_READ_SEARCH
    sys.linkat(AT_FDCWD, procFdPath(fd), t.fd, b('h3'), AT_SYMLINK_FOLLOW);
    expect(statAt(t.fd, b('f'), 0).nlink).toBe(4);
    expect(readFileSync(t.path('h3'), 'utf8')).toBe('data');
    expectErrno(() => sys.linkat(t.fd, b('f'), t.fd, b('h1'), 0), 'EEXIST', 'linkat');
    // an O_TMPFILE file gets a name through the same AT_EMPTY_PATH form
    const tmp = t.track(sys.openat(t.fd, b('.'), O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600));
    sys.pwrite(tmp, b('tmp'), 0, 3, 0);
    sys.linkat(tmp, EMPTY, t.fd, b('named'), AT_EMPTY_PATH);
    expect(readFileSync(t.path('named'), 'utf8')).toBe('tmp');
  });

  it('fchownat (root) with -1 meaning unchanged', () => {
    writeFileSync(t.path('f'), '');
    if (process.getuid?.() !== 0) return;
    sys.fchownat(t.fd, b('f'), 1234, 5678, 0);
    let st = statAt(t.fd, b('f'), 0);
    expect([st.uid, st.gid]).toEqual([1234, 5678]);
    sys.fchownat(t.fd, b('f'), -1, 42, AT_SYMLINK_NOFOLLOW);
    st = statAt(t.fd, b('f'), 0);
    expect([st.uid, st.gid]).toEqual([1234, 42]);
    const p = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    sys.fchownat(p, EMPTY, 0, 0, AT_EMPTY_PATH);
    st = statAt(t.fd, b('f'), 0);
    expect([st.uid, st.gid]).toEqual([0, 0]);
    expectErrno(() => sys.fchownat(t.fd, b('nope'), 0, 0, 0), 'ENOENT', 'fchownat');
  });

  it('fchmodat2: AT_EMPTY_PATH on an O_PATH fd, AT_SYMLINK_NOFOLLOW on a symlink', () => {
    writeFileSync(t.path('f'), '');
    const p = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    sys.fchmodat2(p, EMPTY, 0o604, AT_EMPTY_PATH);
    expect(statAt(t.fd, b('f'), 0).mode & 0o7777).toBe(0o604);
    sys.fchmodat2(t.fd, b('f'), 0o4755, 0);
    expect(statAt(t.fd, b('f'), 0).mode & 0o7777).toBe(0o4755);
    sys.symlinkat(b('f'), t.fd, b('l'));
    // Linux symlinks have no mode of their own
    expectErrno(() => sys.fchmodat2(t.fd, b('l'), 0o600, AT_SYMLINK_NOFOLLOW), 'EOPNOTSUPP', 'fchmodat2');
    expectErrno(() => sys.fchmodat2(t.fd, b('nope'), 0o600, 0), 'ENOENT', 'fchmodat2');
    expectErrno(() => sys.fchmodat2(t.fd, b('f'), 0o600, 0x8000), 'EINVAL', 'fchmodat2');
  });

  it('faccessat2 with AT_EACCESS, AT_EMPTY_PATH and AT_SYMLINK_NOFOLLOW', () => {
    writeFileSync(t.path('f'), '', { mode: 0o600 });
    sys.faccessat2(t.fd, b('f'), R_OK | W_OK, AT_EACCESS);
    sys.faccessat2(t.fd, b('f'), F_OK, 0);
    expectErrno(() => sys.faccessat2(t.fd, b('f'), X_OK, AT_EACCESS), 'EACCES', 'faccessat2'); // even root needs an x bit
    expectErrno(() => sys.faccessat2(t.fd, b('nope'), F_OK, 0), 'ENOENT', 'faccessat2');
    const p = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    sys.faccessat2(p, EMPTY, R_OK, AT_EMPTY_PATH);
    sys.symlinkat(b('dangling'), t.fd, b('l'));
    sys.faccessat2(t.fd, b('l'), F_OK, AT_SYMLINK_NOFOLLOW);
    expectErrno(() => sys.faccessat2(t.fd, b('l'), F_OK, 0), 'ENOENT', 'faccessat2');
  });

  it('namespace ops through a dirfd stay relative to it', () => {
    mkdirSync(t.path('sub'));
    const sub = t.track(sys.openat(t.fd, b('sub'), O_PATH | O_CLOEXEC, 0));
    sys.mkdirat(sub, b('inner'), 0o700);
    expect(existsSync(t.path('sub/inner'))).toBe(true);
  });
});
