/**
 * The FUSE-over-io_uring bindings (native/src/uring.c) against the real kernel, without a mount:
 * argument checks, and entries whose commands the kernel refuses (an fd that is not /dev/fuse), which
 * must come back as one error completion each and leave nothing open. The served path is
 * tested through real mounts (test/mount/io-uring.test.ts and the mount-uring project).
 */
import { openSync, closeSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { sys } from '../../src/sys/syscalls.js';
import { errnoOf, expectErrno } from './util.js';

/** Why io_uring cannot be made here (kernel.io_uring_disabled, seccomp), or null. */
function ringSkip(): string | null {
  try {
    sys.uringProbe();
    return null;
  } catch (e) {
    return `io_uring unavailable: ${(e as { code?: string }).code}`;
  }
}
const skip = ringSkip();
const ringFds = (): number =>
  readdirSync('/proc/self/fd').filter((n) => {
    try {
      return readlinkSync(`/proc/self/fd/${n}`) === 'anon_inode:[io_uring]';
    } catch {
      return false;
    }
  }).length;

// skipped only where this process cannot make an io_uring (sysctl kernel.io_uring_disabled, a seccomp
// filter, a kernel before 5.19): the reason is in the title
describe.skipIf(skip !== null)(`uring bindings${skip ? ` (${skip})` : ''}`, () => {
  it('refuses bad arguments with a TypeError or RangeError, before making anything', () => {
    const fd = openSync(tmpdir(), 'r');
    const before = ringFds();
    const ring = sys.uringCreate(fd);
    try {
      expect(() => sys.uringCreate('x' as unknown as number)).toThrow(TypeError);
      expect(() => sys.uringRegister(ring, 0 as unknown as number[], 1, 8192)).toThrow(TypeError);
      expect(() => sys.uringRegister(ring, [0], 0, 8192)).toThrow(RangeError);
      expect(() => sys.uringRegister(ring, [0], 257, 8192)).toThrow(RangeError);
      expect(() => sys.uringRegister(ring, [0], 1, 4096)).toThrow(RangeError);
      expect(() => sys.uringRegister(ring, [0], 1, 64 * 1024 * 1024)).toThrow(RangeError);
      expect(() => sys.uringRegister(ring, [70_000], 1, 8192)).toThrow(TypeError);
      expect(() => sys.uringRegister(ring, [-1], 1, 8192)).toThrow(TypeError);
      expect(() => sys.uringNext({} as never, Buffer.alloc(64))).toThrow(TypeError);
      expect(() => sys.uringNext(ring, Buffer.alloc(8))).toThrow(RangeError);
      // no queues: a ring only to answer through, nothing registered, nothing to read
      expect(sys.uringRegister(ring, [], 1, 8192)).toBe(0);
      expect(sys.uringNext(ring, Buffer.alloc(64))).toBe(0);
      expect(ringFds()).toBe(before + 1);
    } finally {
      sys.uringClose(ring);
      closeSync(fd);
    }
    expect(ringFds()).toBe(before);
  });

  it('an fd that is not /dev/fuse: every REGISTER comes back once as an error, and the entry is dead', () => {
    // a directory: no uring_cmd (not /dev/null, whose uring_cmd answers 0 for io_uring's own tests)
    const fd = openSync(tmpdir(), 'r');
    try {
      const ring = sys.uringCreate(fd);
      expect(sys.uringRegister(ring, [0, 1], 3, 8192)).toBe(6);
      const buf = Buffer.alloc(8192 + 168);
      const ended = new Map<number, number>();
      for (let i = 0; i < 100 && ended.size < 6; i++) {
        const v = sys.uringNext(ring, buf);
        if (v === 0) continue;
        expect(v).toBeLessThan(0);
        const entry = Math.floor(-v / 4096);
        expect(ended.has(entry)).toBe(false);
        ended.set(entry, -v % 4096);
      }
      // six entries (process-wide ids), each ended once
      expect(ended.size).toBe(6);
      // the kernel refuses the command itself
      for (const errno of ended.values()) expect(errno).toBe(errnoOf('EOPNOTSUPP'));
      expect(sys.uringNext(ring, buf)).toBe(0);
      // each entry's reply space: the 16 bytes of a header, then its payload, writable
      const id = [...ended.keys()][0]!;
      const space = sys.uringReplySpace(id);
      expect(space.length).toBe(16 + 8192);
      space.fill(0x5a);
      expect(sys.uringReplySpace(id)[8207]).toBe(0x5a);
      expect(() => sys.uringReplySpace(16_383)).toThrow(RangeError);
      // a dead entry cannot be committed
      expect(() => sys.uringCommit(ring, [...ended.keys()][0]!, Buffer.alloc(16))).toThrow(RangeError);
      expect(() => sys.uringCommit(ring, 16_383, Buffer.alloc(16))).toThrow(RangeError);
      sys.uringClose(ring);
      expect(() => sys.uringNext(ring, buf)).toThrow(/closed/);
      expect(() => sys.uringClose(ring)).toThrow(/closed/);
    } finally {
      closeSync(fd);
    }
  });

  it('closing a ring releases its fds (the ring and the eventfd the event loop watches)', () => {
    const fd = openSync(tmpdir(), 'r');
    const before = ringFds();
    try {
      const ring = sys.uringCreate(fd);
      expect(ringFds()).toBe(before + 1);
      const rfd = sys.uringFd(ring);
      expect(readlinkSync(`/proc/self/fd/${rfd}`)).toBe('anon_inode:[eventfd]');
      sys.uringClose(ring);
      expect(ringFds()).toBe(before);
      expectErrno(() => sys.fcntlInt(rfd, 1, 0), 'EBADF');
    } finally {
      closeSync(fd);
    }
  });
});
