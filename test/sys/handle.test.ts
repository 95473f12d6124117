import { spawnSync } from 'node:child_process';
import { existsSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import {
  AT_EMPTY_PATH, AT_FDCWD, AT_HANDLE_FID, AT_HANDLE_MNT_ID_UNIQUE, AT_SYMLINK_FOLLOW, O_CLOEXEC, O_DIRECTORY, O_PATH, O_RDONLY,
  O_RDWR, STATX_MNT_ID, STATX_MNT_ID_UNIQUE, statAt, sys, ST, STAT_LEN,
} from '../../src/sys/syscalls.js';
import { b, EMPTY, expectErrno, useTmpDir } from './util.js';
import { scratchExt4, scratchExt4Unavailable } from '../helpers/scratch-ext4.js';

const ADDON = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'build', 'Release', 'handlefs_sys.node');
const asRoot = process.getuid?.() === 0 && sys.capEffective(2);
const haveSetpriv = existsSync('/usr/bin/setpriv');
const noScratch = scratchExt4Unavailable();

describe('name_to_handle_at / open_by_handle_at', () => {
  const t = useTmpDir();
  // open_by_handle_at needs a real (non-O_PATH) fd on the filesystem as its mount fd: the kernel
  // looks it up with fdget(), which refuses O_PATH files with EBADF (virtiofsd opens O_RDONLY too).
  const mountFd = (): number => t.track(sys.openat(t.fd, b('.'), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));

  it.skipIf(!asRoot)('an O_PATH mount fd gives EBADF', () => {
    writeFileSync(t.path('f'), '');
    const h = sys.nameToHandleAt(t.fd, b('f'), 0);
    expectErrno(() => sys.openByHandleAt(t.fd, h.type, h.bytes, O_RDONLY), 'EBADF', 'open_by_handle_at');
  });

  it('returns {type, bytes, mountId}; the mount id matches statx STATX_MNT_ID', () => {
    writeFileSync(t.path('f'), 'hello');
    const h = sys.nameToHandleAt(t.fd, b('f'), 0);
    expect(typeof h.type).toBe('number');
    expect(Buffer.isBuffer(h.bytes)).toBe(true);
    expect(h.bytes.length).toBeGreaterThan(0);
    expect(h.bytes.length).toBeLessThanOrEqual(128);
    expect(typeof h.mountId).toBe('bigint');
    const out = new BigUint64Array(STAT_LEN);
    sys.statx(t.fd, b('f'), 0, STATX_MNT_ID, out);
    expect(h.mountId).toBe(out[ST.MNT_ID]);
  });

  it('each answer is its own: the bytes of one call are not changed by the next (the record buffer is shared)', () => {
    writeFileSync(t.path('a'), '');
    writeFileSync(t.path('z'), '');
    const a = sys.nameToHandleAt(t.fd, b('a'), 0);
    const keep = Buffer.from(a.bytes);
    const z = sys.nameToHandleAt(t.fd, b('z'), 0);
    expect(sys.nameToHandleAtTry(t.fd, b('missing'), 0)).toBe(-2);
    expect(a.bytes.equals(keep)).toBe(true);
    expect(z.bytes.equals(a.bytes)).toBe(false);
    // a file is told by its handle: the same file answers the same bytes again
    expect(sys.nameToHandleAt(t.fd, b('a'), 0).bytes.equals(keep)).toBe(true);
  });

  it('nameToHandleInto writes type, length, mount id and bytes little-endian, or answers -errno; a short buffer is refused', () => {
    writeFileSync(t.path('f'), '');
    const h = sys.nameToHandleAt(t.fd, b('f'), 0);
    const rec = Buffer.alloc(16 + 128, 0xee);
    expect(sys.nameToHandleInto(t.fd, b('f'), 0, rec)).toBe(0);
    expect(rec.readInt32LE(0)).toBe(h.type);
    expect(rec.readUInt32LE(4)).toBe(h.bytes.length);
    expect(rec.readBigUInt64LE(8)).toBe(h.mountId);
    expect(rec.subarray(16, 16 + h.bytes.length).equals(h.bytes)).toBe(true);
    expect(sys.nameToHandleInto(t.fd, b('missing'), 0, rec)).toBe(-2);
    expect(() => sys.nameToHandleInto(t.fd, b('f'), 0, Buffer.alloc(16 + 127))).toThrow(RangeError);
    expectErrno(() => sys.nameToHandleAt(t.fd, b('missing'), 0), 'ENOENT', 'name_to_handle_at');
  });

  it('AT_HANDLE_MNT_ID_UNIQUE returns the 64-bit unique mount id (or EINVAL on old kernels)', () => {
    writeFileSync(t.path('f'), '');
    let h;
    try {
      h = sys.nameToHandleAt(t.fd, b('f'), AT_HANDLE_MNT_ID_UNIQUE);
    } catch (e) {
      expect((e as { code: string }).code).toBe('EINVAL');
      return;
    }
    const out = new BigUint64Array(STAT_LEN);
    sys.statx(t.fd, b('f'), 0, STATX_MNT_ID_UNIQUE, out);
    expect(h.mountId).toBe(out[ST.MNT_ID]);
    expect(h.bytes.equals(sys.nameToHandleAt(t.fd, b('f'), 0).bytes)).toBe(true);
  });

  it('AT_EMPTY_PATH on an O_PATH fd, AT_SYMLINK_FOLLOW, AT_HANDLE_FID', () => {
    writeFileSync(t.path('f'), '');
    const fd = t.track(sys.openat(t.fd, b('f'), O_PATH | O_CLOEXEC, 0));
    const byFd = sys.nameToHandleAt(fd, EMPTY, AT_EMPTY_PATH);
    expect(byFd.bytes.equals(sys.nameToHandleAt(t.fd, b('f'), 0).bytes)).toBe(true);
    symlinkSync('f', t.path('l'));
    const viaLink = sys.nameToHandleAt(t.fd, b('l'), AT_SYMLINK_FOLLOW);
    expect(viaLink.bytes.equals(byFd.bytes)).toBe(true);
    expect(sys.nameToHandleAt(t.fd, b('l'), 0).bytes.equals(byFd.bytes)).toBe(false);
    const fid = sys.nameToHandleAt(t.fd, b('f'), AT_HANDLE_FID);
    expect(fid.bytes.length).toBeGreaterThan(0);
    expectErrno(() => sys.nameToHandleAt(t.fd, b('missing'), 0), 'ENOENT', 'name_to_handle_at');
  });

  it('a handle is identical across lookups', () => {
    writeFileSync(t.path('f'), 'one');
    const h1 = sys.nameToHandleAt(t.fd, b('f'), 0);
    const h2 = sys.nameToHandleAt(t.fd, b('f'), 0);
    expect(h1.type).toBe(h2.type);
    expect(h1.bytes.equals(h2.bytes)).toBe(true);
  });

  // on a journaled ext4 of its own, where a freed inode number goes to the next new file at once
  // (without a journal ext4 avoids recently freed numbers for 5-305 s: reuse would depend on the clock)
  it.skipIf(noScratch !== null)(`a handle differs after delete + recreate on the same inode number${noScratch ? ` (skipped: ${noScratch})` : ''}`, () => {
    const scratch = scratchExt4();
    const fds: number[] = [];
    try {
      const dfd = sys.openat(AT_FDCWD, b(scratch.dir), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
      fds.push(dfd);
      const f = join(scratch.dir, 'f');
      writeFileSync(f, 'one');
      const h1 = sys.nameToHandleAt(dfd, b('f'), 0);
      const ino = statAt(dfd, b('f'), 0).ino;
      unlinkSync(f);
      let reused = false;
      for (let i = 0; i < 200 && !reused; i++) {
        writeFileSync(f, 'two');
        if (statAt(dfd, b('f'), 0).ino === ino) reused = true;
        else unlinkSync(f);
      }
      expect(reused, 'journaled ext4 did not reuse the inode number within 200 tries').toBe(true);
      const h3 = sys.nameToHandleAt(dfd, b('f'), 0);
      expect(h3.bytes.equals(h1.bytes)).toBe(false);
      if (asRoot) {
        const mfd = sys.openat(dfd, b('.'), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        fds.push(mfd);
        // the old handle is stale: the generation no longer matches
        expectErrno(() => sys.openByHandleAt(mfd, h1.type, h1.bytes, O_RDONLY), 'ESTALE', 'open_by_handle_at');
        const fd = sys.openByHandleAt(mfd, h3.type, h3.bytes, O_RDONLY | O_CLOEXEC);
        fds.push(fd);
        const buf = Buffer.alloc(8);
        expect(buf.subarray(0, sys.pread(fd, buf, 0, 8, 0)).toString()).toBe('two');
      }
    } finally {
      for (const fd of fds) sys.close(fd);
      scratch.cleanup();
    }
  });

  it.skipIf(!asRoot)('open_by_handle_at opens the file as root (O_PATH and O_RDWR)', () => {
    writeFileSync(t.path('f'), 'data');
    const h = sys.nameToHandleAt(t.fd, b('f'), 0);
    const fd = t.track(sys.openByHandleAt(mountFd(), h.type, h.bytes, O_RDWR | O_CLOEXEC));
    expect(statAt(fd, EMPTY, AT_EMPTY_PATH).ino).toBe(statAt(t.fd, b('f'), 0).ino);
    const p = t.track(sys.openByHandleAt(mountFd(), h.type, h.bytes, O_PATH | O_CLOEXEC));
    expect(statAt(p, EMPTY, AT_EMPTY_PATH).ino).toBe(statAt(t.fd, b('f'), 0).ino);
    // malformed handles are refused by the kernel, never a crash
    expectErrno(() => sys.openByHandleAt(mountFd(), h.type, Buffer.alloc(129), O_RDONLY), 'EINVAL', 'open_by_handle_at');
    expectErrno(() => sys.openByHandleAt(mountFd(), h.type, EMPTY, O_RDONLY), 'EINVAL', 'open_by_handle_at');
    expect(() => sys.openByHandleAt(mountFd(), 0x7fff, Buffer.alloc(8), O_RDONLY)).toThrow();
  });

  it.skipIf(!asRoot || !haveSetpriv)('open_by_handle_at gives EPERM without CAP_DAC_READ_SEARCH (child process)', () => {
    writeFileSync(t.path('f'), 'data');
    const h = sys.nameToHandleAt(t.fd, b('f'), 0);
    const script = t.path('child.mjs');
    writeFileSync(
      script,
      `import { createRequire } from 'node:module';
const sys = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
const [dir, type, hex] = process.argv.slice(2);
const mfd = sys.openat(-100, Buffer.from(dir), 0o200000, 0); // O_RDONLY|O_DIRECTORY
const out = { cap: sys.capEffective(2) };
try { sys.openByHandleAt(mfd, Number(type), Buffer.from(hex, 'hex'), 0); out.result = 'opened'; }
catch (e) { out.result = { code: e.code, errno: e.errno, syscall: e.syscall }; }
console.log(JSON.stringify(out));
`,
    );
    const r = spawnSync(
      'setpriv',
      ['--inh-caps=-dac_read_search', '--bounding-set=-dac_read_search', '--', process.execPath, script, t.dir,
        String(h.type), h.bytes.toString('hex')],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { cap: boolean; result: unknown };
    expect(out.cap).toBe(false);
    expect(out.result).toEqual({ code: 'EPERM', errno: 1, syscall: 'open_by_handle_at' });
  });

  it('wrong types and bad fds', () => {
    expectErrno(() => sys.nameToHandleAt(-1, b('x'), 0), 'EBADF', 'name_to_handle_at');
    expect(() => sys.openByHandleAt(mountFd(), 1, 'x' as unknown as Buffer, 0)).toThrow(TypeError);
  });
});
