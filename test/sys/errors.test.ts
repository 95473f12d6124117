import { describe, expect, it } from 'vitest';

import { AT_FDCWD, O_CREAT, O_RDONLY, O_RDWR, sys } from '../../src/sys/syscalls.js';
import { b, EMPTY, expectErrno, useTmpDir } from './util.js';

describe('addon errors', () => {
  const t = useTmpDir();

  it('errno errors carry .code, positive .errno, .syscall and "<code>: <syscall>"', () => {
    let err: (Error & { code?: string; errno?: number; syscall?: string }) | null = null;
    try {
      sys.openat(t.fd, b('missing'), O_RDONLY, 0);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err!.code).toBe('ENOENT');
    expect(err!.errno).toBe(2);
    expect(err!.syscall).toBe('openat');
    expect(err!.message).toBe('ENOENT: openat');
  });

  it('a 256-byte name gives ENAMETOOLONG from the kernel', () => {
    expectErrno(() => sys.openat(t.fd, Buffer.alloc(256, 0x61), O_RDWR | O_CREAT, 0o600), 'ENAMETOOLONG', 'openat');
    expectErrno(() => sys.mkdirat(t.fd, Buffer.alloc(256, 0x61), 0o700), 'ENAMETOOLONG', 'mkdirat');
  });

  it('a path longer than PATH_MAX gives ENAMETOOLONG without reaching the kernel', () => {
    expectErrno(() => sys.openat(t.fd, Buffer.alloc(5000, 0x61), O_RDONLY, 0), 'ENAMETOOLONG', 'openat');
    expectErrno(() => sys.statx(t.fd, Buffer.alloc(1 << 20, 0x61), 0, 0, new BigUint64Array(26)), 'ENAMETOOLONG', 'statx');
  });

  it('a name containing a NUL byte gives EINVAL', () => {
    expectErrno(() => sys.openat(t.fd, b('a\0b'), O_RDWR | O_CREAT, 0o600), 'EINVAL', 'openat');
    expectErrno(() => sys.unlinkat(t.fd, b('\0'), 0), 'EINVAL', 'unlinkat');
    expectErrno(() => sys.renameat2(t.fd, b('x'), t.fd, b('y\0'), 0), 'EINVAL', 'renameat2');
    expectErrno(() => sys.fgetxattrTry(0, b('user.a\0'), null), 'EINVAL', 'fgetxattr');
  });

  it('an empty name is passed as "" (ENOENT without AT_EMPTY_PATH)', () => {
    expectErrno(() => sys.openat(t.fd, EMPTY, O_RDONLY, 0), 'ENOENT', 'openat');
  });

  it('wrong argument types give TypeError "Expected <nth> argument to be <type>"', () => {
    const anySys = sys as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => anySys.openat!('3', b('x'), 0, 0)).toThrow(new TypeError('Expected first argument to be an int32'));
    expect(() => anySys.openat!(AT_FDCWD, 'x', 0, 0)).toThrow(new TypeError('Expected second argument to be a Buffer'));
    expect(() => anySys.openat!(AT_FDCWD, b('x'), 0)).toThrow(new TypeError('Expected fourth argument to be a uint32'));
    expect(() => anySys.openat!()).toThrow(TypeError);
    expect(() => anySys.lseek!(0, 0, 0)).toThrow(new TypeError('Expected second argument to be a bigint'));
    expect(() => anySys.mknodat!(t.fd, b('x'), 0, 0)).toThrow(new TypeError('Expected fourth argument to be a bigint'));
    expect(() => anySys.statx!(t.fd, EMPTY, 0, 0, new Uint32Array(26))).toThrow(
      new TypeError('Expected fifth argument to be a BigUint64Array'),
    );
    expect(() => anySys.fgetxattrTry!(0, b('user.x'), 'nope')).toThrow(new TypeError('Expected third argument to be a Buffer or null'));
    expect(() => anySys.fsyncAsync!(0, 1)).toThrow(new TypeError('Expected second argument to be a boolean'));
    expect(() => anySys.pread!(0, [0, 0, 0, 0], 0, 4, 0)).toThrow(new TypeError('Expected second argument to be a Buffer'));
    // sizes, offsets and times take a number or, beyond 2^53, a bigint
    expect(() => anySys.ftruncate!(0, '10')).toThrow(new TypeError('Expected second argument to be a safe integer or a bigint'));
  });

  it('out-of-range numbers give RangeError', () => {
    expect(() => sys.close(2 ** 31)).toThrow(RangeError);
    expect(() => sys.close(1.5)).toThrow(RangeError);
    expect(() => sys.close(Number.NaN)).toThrow(RangeError);
    expect(() => sys.statx(t.fd, EMPTY, 0, 0, new BigUint64Array(3))).toThrow(RangeError);
    expect(() => sys.capEffective(64)).toThrow(RangeError);
    expect(() => sys.ftruncate(0, 2 ** 53)).toThrow(RangeError);
    expect(() => sys.ftruncate(0, 2n ** 63n)).toThrow(new RangeError('Expected second argument to be a bigint in [-2^63, 2^63)'));
  });
});
