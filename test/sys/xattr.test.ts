import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { O_CLOEXEC, O_NOFOLLOW, O_PATH, O_RDONLY, XATTR_CREATE, XATTR_REPLACE, procFdPath, sys } from '../../src/sys/syscalls.js';
import { b, errnoOf, expectErrno, useTmpDir } from './util.js';

const names = (list: Buffer, n: number): string[] =>
  list.subarray(0, n).toString('latin1').split('\0').filter((s) => s !== '').sort();

describe('xattrs', () => {
  const t = useTmpDir();

  it('getxattr & co. on /proc/self/fd/N of an O_PATH fd reach the file', () => {
    writeFileSync(t.path('f'), '');
    const fd = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    const path = procFdPath(fd);
    sys.setxattr(path, b('user.one'), b('value-1'), XATTR_CREATE);
    sys.setxattr(path, b('user.bin'), Buffer.from([0, 1, 2, 0xff]), 0);
    expectErrno(() => sys.setxattr(path, b('user.one'), b('x'), XATTR_CREATE), 'EEXIST', 'setxattr');
    expectErrno(() => sys.setxattr(path, b('user.none'), b('x'), XATTR_REPLACE), 'ENODATA', 'setxattr');
    expect(sys.getxattrTry(path, b('user.one'), null)).toBe(7);
    const val = Buffer.alloc(16);
    expect(sys.getxattrTry(path, b('user.bin'), val)).toBe(4);
    expect(val.subarray(0, 4)).toEqual(Buffer.from([0, 1, 2, 0xff]));
    expect(sys.getxattrTry(path, b('user.one'), Buffer.alloc(3))).toBe(-errnoOf('ERANGE'));
    expect(sys.getxattrTry(path, b('user.missing'), null)).toBe(-errnoOf('ENODATA'));
    const size = sys.listxattr(path, null);
    const list = Buffer.alloc(size);
    expect(sys.listxattr(path, list)).toBe(size);
    expect(names(list, size)).toEqual(['user.bin', 'user.one']);
    expectErrno(() => sys.listxattr(path, Buffer.alloc(1)), 'ERANGE', 'listxattr');
    sys.removexattr(path, b('user.one'));
    expectErrno(() => sys.removexattr(path, b('user.one')), 'ENODATA', 'removexattr');
    // the plain file sees the change
    const real = t.track(sys.openat(t.fd, b('f'), O_RDONLY | O_CLOEXEC, 0));
    expect(sys.fgetxattrTry(real, b('user.bin'), null)).toBe(4);
    // whereas l*xattr on the same path act on the /proc magic link itself, not on the file
    expectErrno(() => sys.lsetxattr(path, b('user.x'), b('1'), 0), 'EPERM', 'lsetxattr');
    expectErrno(() => sys.lgetxattr(path, b('user.bin'), null), 'ENODATA', 'lgetxattr');
  });

  it('l*xattr on plain paths do not follow a symlink; the path forms do', () => {
    writeFileSync(t.path('f'), '');
    sys.symlinkat(b('f'), t.fd, b('l'));
    const link = Buffer.from(t.path('l'));
    const file = Buffer.from(t.path('f'));
    sys.setxattr(link, b('user.via'), b('link'), 0); // follows: lands on f
    expect(sys.lgetxattr(file, b('user.via'), null)).toBe(4);
    expect(sys.getxattrTry(link, b('user.via'), null)).toBe(4);
    expectErrno(() => sys.lgetxattr(link, b('user.via'), null), 'ENODATA', 'lgetxattr');
    expectErrno(() => sys.lsetxattr(link, b('user.x'), b('1'), 0), 'EPERM', 'lsetxattr'); // no user.* on symlinks
    const list = Buffer.alloc(64);
    expect(names(list, sys.listxattr(link, list))).toEqual(['user.via']);
    sys.removexattr(link, b('user.via'));
    expect(sys.listxattr(file, null)).toBe(0);
  });

  it('fgetxattr on a real fd; O_PATH fds are refused with EBADF; bad names', () => {
    writeFileSync(t.path('f'), '');
    const file = Buffer.from(t.path('f'));
    const fd = t.track(sys.openat(t.fd, b('f'), O_RDONLY | O_CLOEXEC, 0));
    sys.setxattr(file, b('user.k'), b('v'), 0);
    sys.setxattr(file, b('user.empty'), Buffer.alloc(0), 0);
    expect(sys.fgetxattrTry(fd, b('user.empty'), null)).toBe(0);
    const val = Buffer.alloc(4);
    expect(sys.fgetxattrTry(fd, b('user.k'), val)).toBe(1);
    expect(val.subarray(0, 1).toString()).toBe('v');
    sys.removexattr(file, b('user.k'));
    expect(sys.fgetxattrTry(fd, b('user.k'), null)).toBe(-errnoOf('ENODATA'));
    expectErrno(() => sys.setxattr(file, b('bogus.k'), b('v'), 0), 'EOPNOTSUPP', 'setxattr');
    expectErrno(() => sys.setxattr(file, Buffer.alloc(300, 0x61), b('v'), 0), 'ERANGE', 'setxattr');
    const p = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    expect(sys.fgetxattrTry(p, b('user.empty'), null)).toBe(-errnoOf('EBADF'));
    expect(sys.fgetxattrTry(-1, b('user.empty'), null)).toBe(-errnoOf('EBADF'));
  });

  it.skipIf(process.getuid?.() !== 0)('trusted.* on a symlink through its O_PATH|O_NOFOLLOW fd (root)', () => {
    writeFileSync(t.path('f'), '');
    sys.symlinkat(b('f'), t.fd, b('l'));
    const fd = t.track(sys.openat(t.fd, b('l'), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0));
    sys.setxattr(procFdPath(fd), b('trusted.k'), b('on-link'), 0);
    expect(sys.lgetxattr(Buffer.from(t.path('l')), b('trusted.k'), null)).toBe(7); // the link itself
    expectErrno(() => sys.lgetxattr(Buffer.from(t.path('f')), b('trusted.k'), null), 'ENODATA', 'lgetxattr');
    expectErrno(() => sys.setxattr(procFdPath(fd), b('user.k'), b('v'), 0), 'EPERM', 'setxattr');
  });
});
