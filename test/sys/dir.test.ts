import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import {
  DT_DIR, DT_LNK, DT_REG, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_RDONLY, SEEK_SET, parseDirents, statAt, sys, type Dirent,
} from '../../src/sys/syscalls.js';
import { b, expectErrno, useTmpDir } from './util.js';

/** One getdents64 call into buf, parsed (as src/fs reads a directory); empty at the end. */
const readDir = (fd: number, buf: Buffer): Dirent[] => parseDirents(buf, sys.getdents64(fd, buf));

describe('getdents64', () => {
  const t = useTmpDir();

  it('lists names (incl. non-UTF-8), types and inode numbers', () => {
    writeFileSync(t.path('file'), '');
    mkdirSync(t.path('dir'));
    symlinkSync('file', t.path('link'));
    const odd = Buffer.from([0x66, 0xff]) // 'f' + an invalid UTF-8 byte;
    const fd = t.track(sys.openat(t.fd, b('.'), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
    sys.close(sys.openat(t.fd, odd, O_CREAT | O_CLOEXEC, 0o600));
    const buf = Buffer.alloc(32 * 1024);
    const all = [];
    for (let ents = readDir(fd, buf); ents.length > 0; ents = readDir(fd, buf)) all.push(...ents);
    const byName = new Map(all.map((e) => [e.name.toString('latin1'), e]));
    expect([...byName.keys()].sort()).toEqual(['.', '..', 'dir', 'f\xff', 'file', 'link'].sort());
    expect(byName.get('file')!.type).toBe(DT_REG);
    expect(byName.get('dir')!.type).toBe(DT_DIR);
    expect(byName.get('link')!.type).toBe(DT_LNK);
    expect(byName.get('file')!.ino).toBe(statAt(t.fd, b('file'), 0).ino);
    expect(sys.getdents64(fd, buf)).toBe(0);
  });

  it('names read into a reused buffer stay as they were; the garbage a buffer held after a name\'s NUL is not part of it', () => {
    const names = Array.from({ length: 40 }, (_, i) => `${'n'.repeat(1 + (i % 13))}${i}`);
    for (const n of names) writeFileSync(t.path(n), '');
    const fd = t.track(sys.openat(t.fd, b('.'), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
    // a buffer full of non-zero bytes: the kernel writes each name and its NUL, not the padding after
    const buf = Buffer.alloc(1024, 0xab);
    const first = readDir(fd, buf);
    const kept = first.map((e) => e.name.toString('latin1'));
    const all = [...first];
    for (let ents = readDir(fd, buf); ents.length > 0; ents = readDir(fd, buf)) all.push(...ents);
    // the buffer was written over since: the first names are still the same bytes
    expect(first.map((e) => e.name.toString('latin1'))).toEqual(kept);
    expect(all.map((e) => e.name.toString('latin1')).sort()).toEqual(['.', '..', ...names].sort());
    for (const e of all) expect(e.name.includes(0xab)).toBe(false);
    // a malformed record (a reclen past the bytes given) ends the parse instead of reading on
    const one = Buffer.alloc(64);
    one.writeUInt16LE(200, 16);
    expect(parseDirents(one, 64)).toEqual([]);
    expect(parseDirents(one, 0)).toEqual([]);
  });

  it('d_off cookies resume a listing after lseek', () => {
    for (let i = 0; i < 200; i++) writeFileSync(t.path(`n${i}`), '');
    const fd = t.track(sys.openat(t.fd, b('.'), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
    const buf = Buffer.alloc(64 * 1024);
    const full = [];
    for (let ents = readDir(fd, buf); ents.length > 0; ents = readDir(fd, buf)) full.push(...ents);
    expect(full.length).toBe(202);
    for (const cut of [0, 1, 57, 150, 200]) {
      expect(sys.lseek(fd, full[cut]!.off, SEEK_SET)).toBe(full[cut]!.off);
      const rest = [];
      for (let ents = readDir(fd, buf); ents.length > 0; ents = readDir(fd, buf)) rest.push(...ents);
      expect(rest.map((e) => e.name.toString())).toEqual(full.slice(cut + 1).map((e) => e.name.toString()));
    }
    // ext4 hashes: 64-bit cookies well above 2^32 for a 64-bit-capable reader
    expect(full.some((e) => e.off > 0xffffffffn)).toBe(true);
    sys.lseek(fd, 0n, SEEK_SET);
    expect(readDir(fd, buf).length).toBeGreaterThan(0);
  });

  it('a small buffer gives EINVAL; a non-directory gives ENOTDIR', () => {
    writeFileSync(t.path('f'), '');
    const fd = t.track(sys.openat(t.fd, b('.'), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
    expectErrno(() => sys.getdents64(fd, Buffer.alloc(8)), 'EINVAL', 'getdents64');
    const f = t.track(sys.openat(t.fd, b('f'), O_RDONLY | O_CLOEXEC, 0));
    expectErrno(() => sys.getdents64(f, Buffer.alloc(4096)), 'ENOTDIR', 'getdents64');
    expectErrno(() => sys.getdents64(t.fd, Buffer.alloc(4096)), 'EBADF', 'getdents64'); // O_PATH
  });
});
