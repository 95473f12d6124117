import { symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import {
  AT_EMPTY_PATH, AT_FDCWD, F_GETFD, F_GETFL, F_SETFD, FD_CLOEXEC, F_DUPFD_CLOEXEC, O_ACCMODE, O_CLOEXEC, O_CREAT,
  O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS, S_IFMT, S_IFREG, procFdPath, statAt, sys,
} from '../../src/sys/syscalls.js';
import { b, EMPTY, expectErrno, useTmpDir } from './util.js';

describe('openat / openat2 / close / fcntl', () => {
  const t = useTmpDir();

  it('openat creates, opens and close closes', () => {
    const fd = sys.openat(t.fd, b('f'), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o640);
    expect(fd).toBeGreaterThan(2);
    const st = statAt(fd, EMPTY, AT_EMPTY_PATH);
    expect(st.mode & S_IFMT).toBe(S_IFREG);
    expect(st.mode & 0o777).toBe(0o640 & ~process.umask());
    sys.close(fd);
    expectErrno(() => sys.close(fd), 'EBADF', 'close');
    expectErrno(() => sys.openat(t.fd, b('f'), O_RDWR | O_CREAT | O_EXCL, 0o600), 'EEXIST', 'openat');
  });

  it('O_NOFOLLOW on a symlink gives ELOOP; O_PATH|O_NOFOLLOW opens the link itself', () => {
    symlinkSync('target', t.path('link'));
    writeFileSync(t.path('target'), 'x');
    expectErrno(() => sys.openat(t.fd, b('link'), O_RDONLY | O_NOFOLLOW, 0), 'ELOOP', 'openat');
    expectErrno(() => sys.openat2(t.fd, b('link'), O_RDONLY | O_NOFOLLOW, 0, 0), 'ELOOP', 'openat2');
    const fd = t.track(sys.openat(t.fd, b('link'), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0));
    expect(sys.readlinkat(fd, EMPTY).toString()).toBe('target');
  });

  it('openat2 RESOLVE_BENEATH: "../x" and an absolute symlink give EXDEV', () => {
    mkdirSync(t.path('root'));
    writeFileSync(t.path('outside'), 'secret');
    writeFileSync(t.path('root/inside'), 'ok');
    symlinkSync(t.path('outside'), t.path('root/abs'));
    symlinkSync('/etc/passwd', t.path('root/etc'));
    symlinkSync('../outside', t.path('root/rel'));
    const root = t.track(sys.openat(t.fd, b('root'), O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
    const fd = t.track(sys.openat2(root, b('inside'), O_RDONLY | O_CLOEXEC, 0, RESOLVE_BENEATH));
    expect(fd).toBeGreaterThan(2);
    expectErrno(() => sys.openat2(root, b('../outside'), O_RDONLY, 0, RESOLVE_BENEATH), 'EXDEV', 'openat2');
    expectErrno(() => sys.openat2(root, b('abs'), O_RDONLY, 0, RESOLVE_BENEATH), 'EXDEV', 'openat2');
    expectErrno(() => sys.openat2(root, b('etc'), O_RDONLY, 0, RESOLVE_BENEATH), 'EXDEV', 'openat2');
    expectErrno(() => sys.openat2(root, b('rel'), O_RDONLY, 0, RESOLVE_BENEATH), 'EXDEV', 'openat2');
    expectErrno(() => sys.openat2(root, b(t.path('outside')), O_RDONLY, 0, RESOLVE_BENEATH), 'EXDEV', 'openat2');
    // without RESOLVE_BENEATH the same walk escapes
    t.track(sys.openat2(root, b('abs'), O_RDONLY | O_CLOEXEC, 0, 0));
  });

  it('openat2 RESOLVE_NO_SYMLINKS / NO_MAGICLINKS', () => {
    writeFileSync(t.path('f'), 'x');
    symlinkSync('f', t.path('l'));
    expectErrno(() => sys.openat2(t.fd, b('l'), O_RDONLY, 0, RESOLVE_NO_SYMLINKS), 'ELOOP', 'openat2');
    const fd = t.track(sys.openat(t.fd, b('f'), O_RDONLY | O_CLOEXEC, 0));
    expectErrno(() => sys.openat2(AT_FDCWD, procFdPath(fd), O_RDONLY, 0, RESOLVE_NO_MAGICLINKS), 'ELOOP', 'openat2');
    t.track(sys.openat2(AT_FDCWD, procFdPath(fd), O_RDONLY | O_CLOEXEC, 0, 0));
  });

  it('openat2 rejects unknown flags with EINVAL (no silent ignore)', () => {
    expectErrno(() => sys.openat2(t.fd, b('x'), 0x80000000, 0, 0), 'EINVAL', 'openat2');
    expectErrno(() => sys.openat2(t.fd, b('x'), O_RDONLY, 0o644, 0), 'EINVAL', 'openat2'); // mode without O_CREAT
    expectErrno(() => sys.openat2(t.fd, b('x'), O_RDONLY, 0, 0x4000_0000), 'EINVAL', 'openat2');
  });

  it('fcntlInt: F_GETFL, F_GETFD/F_SETFD, F_DUPFD_CLOEXEC', () => {
    const fd = t.track(sys.openat(t.fd, b('f'), O_RDWR | O_CREAT | O_CLOEXEC, 0o600));
    expect(sys.fcntlInt(fd, F_GETFL, 0) & O_ACCMODE).toBe(O_RDWR);
    expect(sys.fcntlInt(fd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    sys.fcntlInt(fd, F_SETFD, 0);
    expect(sys.fcntlInt(fd, F_GETFD, 0) & FD_CLOEXEC).toBe(0);
    const dup = t.track(sys.fcntlInt(fd, F_DUPFD_CLOEXEC, 0));
    expect(dup).not.toBe(fd);
    expect(sys.fcntlInt(dup, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    expectErrno(() => sys.fcntlInt(-1, F_GETFL, 0), 'EBADF', 'fcntl');
  });
});
