/**
 * The POSIX case table (go-fuse posixtest.All): each case works inside an existing empty directory
 * using only ordinary syscalls (Node's fs, and python3 for what Node lacks), and asserts with
 * vitest's expect. test/posix/host.test.ts runs it on a plain host directory (which validates the
 * cases); the mount tests run the same table on a FUSE mount.
 *
 * A case that cannot work on every target lists what it needs in `needs` (the runner decides and
 * says why it skips); nothing is skipped silently inside a case.
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { expectErrnoIn } from '../helpers/errno.js';
import { hex, py } from './util.js';

export type Case = (dir: string) => Promise<void>;

/**
 * What a case needs from the target:
 * - root: the process is root (chown to other users, device nodes);
 * - user-xattr: user.* extended attributes are supported;
 * - tmpfile: open(O_TMPFILE) is supported;
 * - shared-mmap: MAP_SHARED writable mappings (a FUSE mount with direct I/O and without
 *   FUSE_DIRECT_IO_ALLOW_MMAP refuses them).
 */
export type Need = 'root' | 'user-xattr' | 'tmpfile' | 'shared-mmap';

const { O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_WRONLY, O_RDONLY, O_NOFOLLOW, O_DIRECTORY } = fs.constants;
const j = path.join;

async function statB(p: string): Promise<fs.BigIntStats> {
  return fsp.lstat(p, { bigint: true });
}

export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export const cases: Record<string, Case> = {
  // ------------------------------------------------------------------ data
  'create, write and read back': async (dir) => {
    const p = j(dir, 'f');
    await fsp.writeFile(p, 'hello world');
    expect(await fsp.readFile(p, 'utf8')).toBe('hello world');
    const st = await fsp.stat(p);
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(11);
    expect(st.nlink).toBe(1);
  },

  'pwrite at offsets leaves zeros in between; pread ranges': async (dir) => {
    const p = j(dir, 'f');
    const fh = await fsp.open(p, O_RDWR | O_CREAT, 0o644);
    try {
      await fh.write(Buffer.from('abc'), 0, 3, 0);
      await fh.write(Buffer.from('xyz'), 0, 3, 10000);
      expect((await fh.stat()).size).toBe(10003);
      const b = Buffer.alloc(20);
      const { bytesRead } = await fh.read(b, 0, 20, 9990);
      expect(bytesRead).toBe(13);
      expect(b.subarray(0, 13)).toEqual(Buffer.concat([Buffer.alloc(10), Buffer.from('xyz')]));
      // a read at EOF returns 0 bytes
      expect((await fh.read(Buffer.alloc(4), 0, 4, 10003)).bytesRead).toBe(0);
    } finally {
      await fh.close();
    }
  },

  'large write and read of 4 MiB round-trip': async (dir) => {
    const p = j(dir, 'big');
    const data = pattern(4 << 20, 7);
    await fsp.writeFile(p, data);
    const back = await fsp.readFile(p);
    expect(back.length).toBe(data.length);
    expect(back.equals(data)).toBe(true);
  },

  'O_APPEND writes land at the end even after a seek': async (dir) => {
    const p = j(dir, 'log');
    await fsp.writeFile(p, 'abc');
    const fh = await fsp.open(p, O_WRONLY | O_APPEND);
    try {
      // a positioned write on an O_APPEND fd still appends on Linux
      await fh.write(Buffer.from('def'), 0, 3, 0);
    } finally {
      await fh.close();
    }
    // and write(2) after lseek(0)
    const r = await py<{ pos: number }>(`
      fd = os.open(args[0], os.O_WRONLY | os.O_APPEND)
      os.lseek(fd, 0, os.SEEK_SET)
      os.write(fd, b'ghi')
      out({'pos': os.lseek(fd, 0, os.SEEK_CUR)})
    `, p);
    expect(r.pos).toBe(9);
    expect(await fsp.readFile(p, 'utf8')).toBe('abcdefghi');
  },

  'truncate grows with zeros and shrinks': async (dir) => {
    const p = j(dir, 'f');
    await fsp.writeFile(p, 'abcdef');
    await fsp.truncate(p, 3);
    expect(await fsp.readFile(p, 'utf8')).toBe('abc');
    await fsp.truncate(p, 8);
    expect(await fsp.readFile(p)).toEqual(Buffer.from('abc\0\0\0\0\0'));
    await fsp.truncate(p, 0);
    expect((await fsp.stat(p)).size).toBe(0);
  },

  'ftruncate of an open file grows and shrinks': async (dir) => {
    const p = j(dir, 'f');
    const fh = await fsp.open(p, O_RDWR | O_CREAT, 0o644);
    try {
      await fh.write('0123456789', 0);
      await fh.truncate(4);
      expect((await fh.stat()).size).toBe(4);
      await fh.truncate(1 << 20);
      expect((await fh.stat()).size).toBe(1 << 20);
      const b = Buffer.alloc(8);
      await fh.read(b, 0, 8, 0);
      expect(b).toEqual(Buffer.from('0123\0\0\0\0'));
    } finally {
      await fh.close();
    }
    expect((await fsp.stat(p)).size).toBe(1 << 20);
  },

  'writes across and beyond 4 GiB: sparse, SEEK_DATA and SEEK_HOLE': async (dir) => {
    const p = j(dir, 'sparse');
    const fh = await fsp.open(p, O_RDWR | O_CREAT, 0o644);
    try {
      // straddling the 32-bit boundary
      await fh.write(Buffer.from('ABCD'), 0, 4, 2 ** 32 - 2);
      const b = Buffer.alloc(4);
      await fh.read(b, 0, 4, 2 ** 32 - 2);
      expect(b.toString()).toBe('ABCD');
    } finally {
      await fh.close();
    }
    const r = await py<Record<string, number | string>>(`
      fd = os.open(args[0], os.O_RDWR)
      off = 5 << 30
      os.pwrite(fd, b'x' * 4096, off)
      st = os.fstat(fd)
      res = {'size': st.st_size, 'blocks': st.st_blocks}
      res['data0'] = os.lseek(fd, 0, os.SEEK_DATA)
      res['hole0'] = os.lseek(fd, 0, os.SEEK_HOLE)
      res['data4g'] = os.lseek(fd, (4 << 30) + 4096, os.SEEK_DATA)
      res['holeAfter'] = os.lseek(fd, off, os.SEEK_HOLE)
      res['dataEof'] = err(lambda: os.lseek(fd, st.st_size, os.SEEK_DATA))
      res['zeros'] = os.pread(fd, 16, 3 << 30) == bytes(16)
      res['x'] = os.pread(fd, 4, off + 10).decode()
      out(res)
    `, p);
    const off = 5 * 2 ** 30;
    expect(r.size).toBe(off + 4096);
    // a few blocks, not 5 GiB worth
    expect(r.blocks as number).toBeLessThan(1024);
    expect(r.data0).toBe(2 ** 32 - 4096); // the block holding 'AB'
    expect(r.hole0).toBe(0);
    expect(r.data4g).toBe(off);
    expect(r.holeAfter).toBe(off + 4096);
    expect(r.dataEof).toBe('ENXIO');
    expect(r.zeros).toBe(true);
    expect(r.x).toBe('xxxx');
  },

  'posix_fallocate allocates; FALLOC_FL_PUNCH_HOLE frees and reads as zeros': async (dir) => {
    const p = j(dir, 'f');
    const r = await py<Record<string, number>>(`
      fd = os.open(args[0], os.O_RDWR | os.O_CREAT, 0o644)
      os.posix_fallocate(fd, 0, 1 << 20)
      st = os.fstat(fd)
      res = {'size': st.st_size, 'blocks': st.st_blocks}
      os.pwrite(fd, b'y' * (1 << 20), 0)
      # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE
      libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
      check(libc.fallocate(fd, 3, 65536, 65536))
      st = os.fstat(fd)
      res['size2'] = st.st_size
      res['blocks2'] = st.st_blocks
      res['hole'] = os.lseek(fd, 0, os.SEEK_HOLE)
      res['zeros'] = int(os.pread(fd, 65536, 65536) == bytes(65536))
      res['after'] = int(os.pread(fd, 4, 131072) == b'yyyy')
      out(res)
    `, p);
    expect(r.size).toBe(1 << 20);
    expect(r.blocks).toBeGreaterThanOrEqual((1 << 20) / 512);
    expect(r.size2).toBe(1 << 20);
    expect(r.blocks2).toBe(r.blocks - 65536 / 512);
    expect(r.hole).toBe(65536);
    expect(r.zeros).toBe(1);
    expect(r.after).toBe(1);
  },

  'copy_file_range copies a range between files': async (dir) => {
    const src = j(dir, 'src');
    const dst = j(dir, 'dst');
    const data = pattern(300_000, 3);
    await fsp.writeFile(src, data);
    await fsp.writeFile(dst, 'HEAD');
    const r = await py<{ n: number }>(`
      a = os.open(args[0], os.O_RDONLY)
      b = os.open(args[1], os.O_WRONLY)
      total = 0
      while total < 200000:
          n = os.copy_file_range(a, b, 200000 - total, 10 + total, 4 + total)
          if n == 0: break
          total += n
      out({'n': total})
    `, src, dst);
    expect(r.n).toBe(200_000);
    const back = await fsp.readFile(dst);
    expect(back.length).toBe(200_004);
    expect(back.subarray(0, 4).toString()).toBe('HEAD');
    expect(back.subarray(4).equals(data.subarray(10, 200_010))).toBe(true);
  },

  'mmap: shared writes reach the file, file writes reach the mapping': async (dir) => {
    const p = j(dir, 'm');
    await fsp.writeFile(p, Buffer.alloc(8192));
    const r = await py<{ seen: string }>(`
      import mmap
      fd = os.open(args[0], os.O_RDWR)
      m = mmap.mmap(fd, 8192)
      m[0:5] = b'hello'
      m[4096:4101] = b'world'
      m.flush()
      os.pwrite(fd, b'XYZ', 100)
      seen = m[100:103].decode()
      m.close()
      os.close(fd)
      out({'seen': seen})
    `, p);
    expect(r.seen).toBe('XYZ');
    const b = await fsp.readFile(p);
    expect(b.subarray(0, 5).toString()).toBe('hello');
    expect(b.subarray(4096, 4101).toString()).toBe('world');
    expect(b.subarray(100, 103).toString()).toBe('XYZ');
  },

  'mmap read-only private mapping of file data': async (dir) => {
    const p = j(dir, 'm');
    await fsp.writeFile(p, pattern(20000, 5));
    const r = await py<{ h: string }>(`
      import mmap, hashlib
      fd = os.open(args[0], os.O_RDONLY)
      m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
      out({'h': m[:].hex()})
    `, p);
    expect(Buffer.from(r.h, 'hex').equals(pattern(20000, 5))).toBe(true);
  },

  'fsync and fdatasync on a file and a directory': async (dir) => {
    const p = j(dir, 'f');
    const fh = await fsp.open(p, O_RDWR | O_CREAT, 0o644);
    try {
      await fh.write('data', 0);
      await fh.sync();
      await fh.datasync();
    } finally {
      await fh.close();
    }
    const r = await py<{ f: string; d: string }>(`
      fd = os.open(args[0], os.O_RDONLY | os.O_DIRECTORY)
      out({'f': err(lambda: os.fsync(fd)), 'd': err(lambda: os.fdatasync(fd))})
    `, dir);
    expect(r).toEqual({ f: 'OK', d: 'OK' });
  },

  'unlink while open: I/O through the fd continues, fstat nlink 0': async (dir) => {
    const p = j(dir, 'f');
    const fh = await fsp.open(p, O_RDWR | O_CREAT, 0o644);
    try {
      await fh.write('abc', 0);
      await fsp.unlink(p);
      await expectErrnoIn(fsp.stat(p), 'ENOENT');
      expect(await fsp.readdir(dir)).toEqual([]);
      await fh.write('def', 3);
      const b = Buffer.alloc(6);
      await fh.read(b, 0, 6, 0);
      expect(b.toString()).toBe('abcdef');
      const st = await fh.stat();
      expect(st.nlink).toBe(0);
      expect(st.size).toBe(6);
      await fh.truncate(2);
      expect((await fh.stat()).size).toBe(2);
    } finally {
      await fh.close();
    }
  },

  'rename over an open file: the old fd still reads the old data': async (dir) => {
    const a = j(dir, 'a');
    const b = j(dir, 'b');
    await fsp.writeFile(a, 'old');
    await fsp.writeFile(b, 'new');
    const fh = await fsp.open(a, O_RDONLY);
    try {
      await fsp.rename(b, a);
      const buf = Buffer.alloc(3);
      await fh.read(buf, 0, 3, 0);
      expect(buf.toString()).toBe('old');
      expect((await fh.stat()).nlink).toBe(0);
      expect(await fsp.readFile(a, 'utf8')).toBe('new');
    } finally {
      await fh.close();
    }
  },

  // ------------------------------------------------------------------ open flags
  'O_EXCL create: EEXIST on a file and on a dangling symlink': async (dir) => {
    const p = j(dir, 'f');
    const fh = await fsp.open(p, O_RDWR | O_CREAT | O_EXCL, 0o600);
    await fh.close();
    await expectErrnoIn(fsp.open(p, O_RDWR | O_CREAT | O_EXCL, 0o600), 'EEXIST');
    await fsp.symlink('nowhere', j(dir, 'dangling'));
    await expectErrnoIn(fsp.open(j(dir, 'dangling'), O_RDWR | O_CREAT | O_EXCL, 0o600), 'EEXIST');
    await expectErrnoIn(fsp.lstat(j(dir, 'nowhere')), 'ENOENT');
    // without O_EXCL, O_CREAT through a dangling symlink creates its target
    const fh2 = await fsp.open(j(dir, 'dangling'), O_WRONLY | O_CREAT, 0o600);
    await fh2.close();
    expect((await fsp.lstat(j(dir, 'nowhere'))).isFile()).toBe(true);
  },

  'O_TRUNC open empties an existing file': async (dir) => {
    const p = j(dir, 'f');
    await fsp.writeFile(p, 'some content');
    const ino = (await fsp.stat(p)).ino;
    const fh = await fsp.open(p, O_WRONLY | O_TRUNC);
    try {
      expect((await fh.stat()).size).toBe(0);
    } finally {
      await fh.close();
    }
    const st = await fsp.stat(p);
    expect(st.size).toBe(0);
    expect(st.ino).toBe(ino);
  },

  'open flags: O_DIRECTORY on a file ENOTDIR, O_NOFOLLOW on a symlink ELOOP, writing a directory EISDIR': async (dir) => {
    await fsp.writeFile(j(dir, 'f'), 'x');
    await fsp.symlink('f', j(dir, 'l'));
    await fsp.mkdir(j(dir, 'd'));
    await expectErrnoIn(fsp.open(j(dir, 'f'), O_RDONLY | O_DIRECTORY), 'ENOTDIR');
    await expectErrnoIn(fsp.open(j(dir, 'l'), O_RDONLY | O_NOFOLLOW), 'ELOOP');
    await expectErrnoIn(fsp.open(j(dir, 'd'), O_WRONLY), 'EISDIR');
    await expectErrnoIn(fsp.stat(j(dir, 'f', 'x')), 'ENOTDIR');
    await expectErrnoIn(fsp.open(j(dir, 'missing'), O_RDONLY), 'ENOENT');
  },

  'access: F_OK, R_OK|W_OK, X_OK on a non-executable file, ENOENT': async (dir) => {
    const p = j(dir, 'f');
    await fsp.writeFile(p, 'x', { mode: 0o644 });
    await fsp.chmod(p, 0o644);
    await fsp.access(p, fs.constants.F_OK);
    await fsp.access(p, fs.constants.R_OK | fs.constants.W_OK);
    // even root needs one execute bit
    await expectErrnoIn(fsp.access(p, fs.constants.X_OK), 'EACCES');
    await fsp.chmod(p, 0o755);
    await fsp.access(p, fs.constants.X_OK);
    await expectErrnoIn(fsp.access(j(dir, 'missing')), 'ENOENT');
  },

  // ------------------------------------------------------------------ directories and names
  'mkdir and rmdir: EEXIST, ENOTEMPTY, ENOTDIR, ENOENT': async (dir) => {
    const d = j(dir, 'd');
    await fsp.mkdir(d, { mode: 0o755 });
    const st = await fsp.stat(d);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o777).toBe(0o755);
    await expectErrnoIn(fsp.mkdir(d), 'EEXIST');
    await fsp.writeFile(j(d, 'f'), 'x');
    await expectErrnoIn(fsp.rmdir(d), 'ENOTEMPTY', 'EEXIST');
    await expectErrnoIn(fsp.rmdir(j(d, 'f')), 'ENOTDIR');
    await expectErrnoIn(fsp.rmdir(j(dir, 'missing')), 'ENOENT');
    await fsp.unlink(j(d, 'f'));
    await fsp.rmdir(d);
    await expectErrnoIn(fsp.stat(d), 'ENOENT');
  },

  'directory nlink counts its subdirectories': async (dir) => {
    const d = j(dir, 'd');
    await fsp.mkdir(d);
    expect((await fsp.stat(d)).nlink).toBe(2);
    await fsp.mkdir(j(d, 'a'));
    await fsp.mkdir(j(d, 'b'));
    await fsp.writeFile(j(d, 'f'), '');
    expect((await fsp.stat(d)).nlink).toBe(4);
    await fsp.rmdir(j(d, 'a'));
    expect((await fsp.stat(d)).nlink).toBe(3);
  },

  'unlink: ENOENT for a missing name, EISDIR for a directory': async (dir) => {
    await expectErrnoIn(fsp.unlink(j(dir, 'missing')), 'ENOENT');
    await fsp.mkdir(j(dir, 'd'));
    await expectErrnoIn(fsp.unlink(j(dir, 'd')), 'EISDIR');
    await fsp.writeFile(j(dir, 'f'), '');
    await fsp.unlink(j(dir, 'f'));
    expect(await fsp.readdir(dir)).toEqual(['d']);
  },

  'readdir lists every entry once with its type': async (dir) => {
    const want = new Map<string, string>();
    for (let i = 0; i < 40; i++) {
      await fsp.writeFile(j(dir, `file${i}`), '');
      want.set(`file${i}`, 'file');
    }
    await fsp.mkdir(j(dir, 'sub'));
    want.set('sub', 'dir');
    await fsp.symlink('file0', j(dir, 'link'));
    want.set('link', 'symlink');
    const got = new Map<string, string>();
    for (const d of await fsp.readdir(dir, { withFileTypes: true })) {
      expect(got.has(d.name)).toBe(false);
      got.set(d.name, d.isFile() ? 'file' : d.isDirectory() ? 'dir' : d.isSymbolicLink() ? 'symlink' : '?');
    }
    expect(got).toEqual(want);
  },

  'telldir/seekdir resume a listing at any position': async (dir) => {
    // long names: more than one getdents buffer (glibc reads 32 KiB at a time)
    const names: string[] = [];
    for (let i = 0; i < 600; i++) names.push(`entry-${String(i).padStart(4, '0')}-${'x'.repeat(40)}`);
    for (const n of names) fs.closeSync(fs.openSync(j(dir, n), 'w'));
    const r = await py<{ all: string[]; mismatches: number[]; checked: number; rewound: boolean }>(`
      class Dirent(ctypes.Structure):
          _fields_ = [('d_ino', ctypes.c_uint64), ('d_off', ctypes.c_int64), ('d_reclen', ctypes.c_ushort),
                      ('d_type', ctypes.c_ubyte), ('d_name', ctypes.c_char * 256)]
      libc.opendir.restype = ctypes.c_void_p
      libc.opendir.argtypes = [ctypes.c_char_p]
      libc.readdir.restype = ctypes.POINTER(Dirent)
      libc.readdir.argtypes = [ctypes.c_void_p]
      libc.telldir.restype = ctypes.c_long
      libc.telldir.argtypes = [ctypes.c_void_p]
      libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
      libc.rewinddir.argtypes = [ctypes.c_void_p]
      libc.closedir.argtypes = [ctypes.c_void_p]
      d = libc.opendir(os.fsencode(args[0]))
      if not d: check(-1)
      def rest():
          names = []
          while True:
              e = libc.readdir(d)
              if not e: return names
              names.append(e.contents.d_name.decode())
      pos, names = [], []
      while True:
          p = libc.telldir(d)
          e = libc.readdir(d)
          if not e: break
          pos.append(p)
          names.append(e.contents.d_name.decode())
      mism, checked = [], 0
      for i in list(range(0, len(names), 37)) + [len(names) - 1]:
          libc.seekdir(d, pos[i])
          if rest() != names[i:]: mism.append(i)
          checked += 1
      libc.rewinddir(d)
      rewound = rest() == names
      libc.closedir(d)
      out({'all': names, 'mismatches': mism, 'checked': checked, 'rewound': rewound})
    `, dir);
    expect(r.mismatches).toEqual([]);
    expect(r.checked).toBeGreaterThan(10);
    expect(r.rewound).toBe(true);
    expect([...r.all].sort()).toEqual(['.', '..', ...names].sort());
  },

  'a directory of 20,000 entries is listed completely and exactly once': async (dir) => {
    const d = j(dir, 'many');
    await fsp.mkdir(d);
    const N = 20_000;
    for (let i = 0; i < N; i++) fs.closeSync(fs.openSync(j(d, `n${i}`), 'w'));
    const check = (list: string[]): void => {
      expect(list.length).toBe(N);
      expect(new Set(list).size).toBe(N);
      for (let i = 0; i < N; i += 997) expect(list).toContain(`n${i}`);
    };
    check(fs.readdirSync(d));
    // small batches through opendir/readdir
    const seen: string[] = [];
    const h = await fsp.opendir(d, { bufferSize: 7 });
    for await (const e of h) seen.push(e.name);
    check(seen);
    const r = await py<{ n: number; uniq: number }>(`
      names = [e.name for e in os.scandir(args[0])]
      out({'n': len(names), 'uniq': len(set(names))})
    `, d);
    expect(r).toEqual({ n: N, uniq: N });
  },

  'names with non-UTF-8 bytes: create, list, stat, rename, unlink': async (dir) => {
    const dirB = Buffer.from(dir);
    const name = Buffer.from([0xff, 0xfe, 0x41, 0x80]);
    const name2 = Buffer.from([0xc3, 0x28, 0x2e, 0x74]);
    const p = Buffer.concat([dirB, Buffer.from('/'), name]);
    const p2 = Buffer.concat([dirB, Buffer.from('/'), name2]);
    fs.writeFileSync(p, 'bytes');
    const list = fs.readdirSync(dir, { encoding: 'buffer' });
    expect(list.length).toBe(1);
    expect(list[0]!.equals(name)).toBe(true);
    expect(fs.readFileSync(p, 'utf8')).toBe('bytes');
    fs.renameSync(p, p2);
    expect(fs.readdirSync(dir, { encoding: 'buffer' }).map((b) => b.toString('hex'))).toEqual([name2.toString('hex')]);
    const r = await py<{ names: string[] }>(`
      out({'names': [n.hex() for n in os.listdir(os.fsencode(args[0]))]})
    `, dir);
    expect(r.names).toEqual([hex(name2)]);
    fs.unlinkSync(p2);
    expect(fs.readdirSync(dir)).toEqual([]);
  },

  'names of 255 bytes work, 256 bytes are ENAMETOOLONG': async (dir) => {
    const ok = 'a'.repeat(255);
    const long = 'b'.repeat(256);
    await fsp.writeFile(j(dir, ok), 'x');
    expect(await fsp.readdir(dir)).toEqual([ok]);
    await fsp.mkdir(j(dir, 'c'.repeat(255)));
    // 85 three-byte characters = 255 bytes; 86 = 258
    await fsp.writeFile(j(dir, '€'.repeat(85)), '');
    await expectErrnoIn(fsp.writeFile(j(dir, long), 'x'), 'ENAMETOOLONG');
    await expectErrnoIn(fsp.writeFile(j(dir, '€'.repeat(86)), 'x'), 'ENAMETOOLONG');
    await expectErrnoIn(fsp.mkdir(j(dir, long)), 'ENAMETOOLONG');
    await expectErrnoIn(fsp.stat(j(dir, long)), 'ENAMETOOLONG');
    await expectErrnoIn(fsp.rename(j(dir, ok), j(dir, long)), 'ENAMETOOLONG');
    expect((await fsp.readdir(dir)).length).toBe(3);
  },

  // ------------------------------------------------------------------ rename
  'rename a file over a file replaces it': async (dir) => {
    const a = j(dir, 'a');
    const b = j(dir, 'b');
    await fsp.writeFile(a, 'A');
    await fsp.writeFile(b, 'B');
    const ino = (await fsp.stat(a)).ino;
    await fsp.rename(a, b);
    expect(await fsp.readdir(dir)).toEqual(['b']);
    expect(await fsp.readFile(b, 'utf8')).toBe('A');
    expect((await fsp.stat(b)).ino).toBe(ino);
    // renaming to itself is a no-op
    await fsp.rename(b, b);
    expect(await fsp.readFile(b, 'utf8')).toBe('A');
  },

  'rename across directories': async (dir) => {
    await fsp.mkdir(j(dir, 'x'));
    await fsp.mkdir(j(dir, 'y'));
    await fsp.writeFile(j(dir, 'x', 'f'), 'data');
    await fsp.mkdir(j(dir, 'x', 'sub'));
    await fsp.writeFile(j(dir, 'x', 'sub', 'g'), 'g');
    await fsp.rename(j(dir, 'x', 'f'), j(dir, 'y', 'f2'));
    await fsp.rename(j(dir, 'x', 'sub'), j(dir, 'y', 'sub'));
    expect(await fsp.readdir(j(dir, 'x'))).toEqual([]);
    expect((await fsp.readdir(j(dir, 'y'))).sort()).toEqual(['f2', 'sub']);
    expect(await fsp.readFile(j(dir, 'y', 'sub', 'g'), 'utf8')).toBe('g');
    expect((await fsp.stat(j(dir, 'x'))).nlink).toBe(2);
    expect((await fsp.stat(j(dir, 'y'))).nlink).toBe(3);
  },

  'rename a directory over an empty directory': async (dir) => {
    await fsp.mkdir(j(dir, 'src'));
    await fsp.writeFile(j(dir, 'src', 'f'), 'x');
    await fsp.mkdir(j(dir, 'dst'));
    const ino = (await fsp.stat(j(dir, 'src'))).ino;
    await fsp.rename(j(dir, 'src'), j(dir, 'dst'));
    expect(await fsp.readdir(dir)).toEqual(['dst']);
    expect((await fsp.stat(j(dir, 'dst'))).ino).toBe(ino);
    expect(await fsp.readFile(j(dir, 'dst', 'f'), 'utf8')).toBe('x');
  },

  'rename a directory over a non-empty directory: ENOTEMPTY': async (dir) => {
    await fsp.mkdir(j(dir, 'src'));
    await fsp.mkdir(j(dir, 'dst'));
    await fsp.writeFile(j(dir, 'dst', 'f'), 'x');
    // POSIX allows EEXIST too; Linux local filesystems say ENOTEMPTY
    await expectErrnoIn(fsp.rename(j(dir, 'src'), j(dir, 'dst')), 'ENOTEMPTY', 'EEXIST');
    expect((await fsp.readdir(dir)).sort()).toEqual(['dst', 'src']);
  },

  'rename type mismatches: file over dir EISDIR, dir over file ENOTDIR, dir into itself EINVAL': async (dir) => {
    await fsp.mkdir(j(dir, 'd'));
    await fsp.writeFile(j(dir, 'f'), '');
    await expectErrnoIn(fsp.rename(j(dir, 'f'), j(dir, 'd')), 'EISDIR');
    await expectErrnoIn(fsp.rename(j(dir, 'd'), j(dir, 'f')), 'ENOTDIR');
    await fsp.mkdir(j(dir, 'd', 'sub'));
    await expectErrnoIn(fsp.rename(j(dir, 'd'), j(dir, 'd', 'sub', 'x')), 'EINVAL');
    await expectErrnoIn(fsp.rename(j(dir, 'missing'), j(dir, 'x')), 'ENOENT');
  },

  'RENAME_NOREPLACE: EEXIST over an existing name, moves otherwise': async (dir) => {
    await fsp.writeFile(j(dir, 'a'), 'A');
    await fsp.writeFile(j(dir, 'b'), 'B');
    const r = await py<{ over: string; fresh: string }>(`
      RENAME_NOREPLACE = 1
      over = err(lambda: renameat2(args[0] + '/a', args[0] + '/b', RENAME_NOREPLACE))
      fresh = err(lambda: renameat2(args[0] + '/a', args[0] + '/c', RENAME_NOREPLACE))
      out({'over': over, 'fresh': fresh})
    `, dir);
    expect(r).toEqual({ over: 'EEXIST', fresh: 'OK' });
    expect((await fsp.readdir(dir)).sort()).toEqual(['b', 'c']);
    expect(await fsp.readFile(j(dir, 'b'), 'utf8')).toBe('B');
    expect(await fsp.readFile(j(dir, 'c'), 'utf8')).toBe('A');
  },

  'RENAME_EXCHANGE swaps two names (a file and a directory)': async (dir) => {
    await fsp.writeFile(j(dir, 'f'), 'F');
    await fsp.mkdir(j(dir, 'd'));
    await fsp.writeFile(j(dir, 'd', 'inner'), 'I');
    const fino = (await fsp.stat(j(dir, 'f'))).ino;
    const dino = (await fsp.stat(j(dir, 'd'))).ino;
    const r = await py<{ swap: string; missing: string }>(`
      RENAME_EXCHANGE = 2
      swap = err(lambda: renameat2(args[0] + '/f', args[0] + '/d', RENAME_EXCHANGE))
      missing = err(lambda: renameat2(args[0] + '/f', args[0] + '/nothing', RENAME_EXCHANGE))
      out({'swap': swap, 'missing': missing})
    `, dir);
    expect(r).toEqual({ swap: 'OK', missing: 'ENOENT' });
    expect((await fsp.stat(j(dir, 'f'))).ino).toBe(dino);
    expect((await fsp.stat(j(dir, 'd'))).ino).toBe(fino);
    expect(await fsp.readFile(j(dir, 'f', 'inner'), 'utf8')).toBe('I');
    expect(await fsp.readFile(j(dir, 'd'), 'utf8')).toBe('F');
  },

  // ------------------------------------------------------------------ links
  'hard links share the inode and count nlink': async (dir) => {
    const a = j(dir, 'a');
    await fsp.writeFile(a, 'shared');
    await fsp.mkdir(j(dir, 'sub'));
    await fsp.link(a, j(dir, 'b'));
    await fsp.link(a, j(dir, 'sub', 'c'));
    const [sa, sb, sc] = await Promise.all([a, j(dir, 'b'), j(dir, 'sub', 'c')].map((p) => fsp.stat(p)));
    expect(sb!.ino).toBe(sa!.ino);
    expect(sc!.ino).toBe(sa!.ino);
    expect(sa!.nlink).toBe(3);
    await fsp.appendFile(j(dir, 'b'), '!');
    expect(await fsp.readFile(j(dir, 'sub', 'c'), 'utf8')).toBe('shared!');
    await fsp.unlink(a);
    expect((await fsp.stat(j(dir, 'b'))).nlink).toBe(2);
    await expectErrnoIn(fsp.link(j(dir, 'b'), j(dir, 'sub', 'c')), 'EEXIST');
    await expectErrnoIn(fsp.link(j(dir, 'missing'), j(dir, 'x')), 'ENOENT');
  },

  'hard link to a directory: EPERM': async (dir) => {
    await fsp.mkdir(j(dir, 'd'));
    await expectErrnoIn(fsp.link(j(dir, 'd'), j(dir, 'd2')), 'EPERM');
  },

  'symlink and readlink; stat follows, lstat does not': async (dir) => {
    await fsp.writeFile(j(dir, 'target'), 'T');
    await fsp.symlink('target', j(dir, 'l'));
    expect(await fsp.readlink(j(dir, 'l'))).toBe('target');
    const ls = await fsp.lstat(j(dir, 'l'));
    expect(ls.isSymbolicLink()).toBe(true);
    expect(ls.size).toBe(6);
    expect((await fsp.stat(j(dir, 'l'))).isFile()).toBe(true);
    expect(await fsp.readFile(j(dir, 'l'), 'utf8')).toBe('T');
    await expectErrnoIn(fsp.readlink(j(dir, 'target')), 'EINVAL');
    await expectErrnoIn(fsp.symlink('x', j(dir, 'l')), 'EEXIST');
    // a long target (4095 bytes is PATH_MAX - 1)
    const long = 'a/'.repeat(2047) + 'z';
    await fsp.symlink(long, j(dir, 'long'));
    expect(await fsp.readlink(j(dir, 'long'))).toBe(long);
  },

  'dangling symlink: lstat works, stat is ENOENT': async (dir) => {
    await fsp.symlink('does/not/exist', j(dir, 'dangling'));
    expect(await fsp.readlink(j(dir, 'dangling'))).toBe('does/not/exist');
    expect((await fsp.lstat(j(dir, 'dangling'))).isSymbolicLink()).toBe(true);
    await expectErrnoIn(fsp.stat(j(dir, 'dangling')), 'ENOENT');
    await fsp.unlink(j(dir, 'dangling'));
    expect(await fsp.readdir(dir)).toEqual([]);
  },

  'symlink targets pointing outside are stored and returned verbatim': async (dir) => {
    const targets = ['/etc/passwd', '../../../../../../outside', '/', '..', 'a//b/./c/', 'trailing/'];
    for (const [i, t] of targets.entries()) {
      await fsp.symlink(t, j(dir, `l${i}`));
      expect(await fsp.readlink(j(dir, `l${i}`))).toBe(t);
      expect((await fsp.lstat(j(dir, `l${i}`))).size).toBe(Buffer.byteLength(t));
    }
    const bin = Buffer.from([0x2f, 0xff, 0x00 + 0x41, 0xfe]);
    const lp = Buffer.from(j(dir, 'lbin'));
    fs.symlinkSync(bin, lp);
    expect(fs.readlinkSync(lp, { encoding: 'buffer' }).equals(bin)).toBe(true);
  },

  // ------------------------------------------------------------------ attributes
  'chmod sets permission bits, setgid and sticky': async (dir) => {
    const f = j(dir, 'f');
    await fsp.writeFile(f, '');
    await fsp.chmod(f, 0o640);
    expect((await fsp.stat(f)).mode & 0o7777).toBe(0o640);
    await fsp.chmod(f, 0o4755);
    expect((await fsp.stat(f)).mode & 0o7777).toBe(0o4755);
    const d = j(dir, 'd');
    await fsp.mkdir(d);
    await fsp.chmod(d, 0o3775);
    const st = await fsp.stat(d);
    expect(st.mode & 0o7777).toBe(0o3775);
    expect(st.isDirectory()).toBe(true);
    // a file created in a setgid directory inherits its group
    await fsp.writeFile(j(d, 'g'), '');
    expect((await fsp.stat(j(d, 'g'))).gid).toBe(st.gid);
  },

  'chmod changes ctime, write changes mtime and ctime': async (dir) => {
    const f = j(dir, 'f');
    await fsp.writeFile(f, 'x');
    const old = 1_000_000_000;
    await fsp.utimes(f, old, old);
    const s0 = await statB(f);
    await fsp.chmod(f, 0o600);
    const s1 = await statB(f);
    expect(s1.ctimeNs).toBeGreaterThanOrEqual(s0.ctimeNs);
    expect(s1.mtimeNs).toBe(BigInt(old) * 1_000_000_000n);
    await fsp.appendFile(f, 'y');
    const s2 = await statB(f);
    expect(s2.mtimeNs).toBeGreaterThan(BigInt(old) * 1_000_000_000n);
  },

  'chown to the own uid and gid': async (dir) => {
    const f = j(dir, 'f');
    await fsp.writeFile(f, '');
    const uid = process.getuid!();
    const gid = process.getgid!();
    await fsp.chown(f, uid, gid);
    const st = await fsp.stat(f);
    expect([st.uid, st.gid]).toEqual([uid, gid]);
    await fsp.symlink('f', j(dir, 'l'));
    await fsp.lchown(j(dir, 'l'), uid, gid);
  },

  'chown to another user and group; chown clears setuid': async (dir) => {
    const f = j(dir, 'f');
    await fsp.writeFile(f, '');
    await fsp.chown(f, 1234, 5678);
    let st = await fsp.stat(f);
    expect([st.uid, st.gid]).toEqual([1234, 5678]);
    await fsp.chown(f, -1, 4321);
    st = await fsp.stat(f);
    expect([st.uid, st.gid]).toEqual([1234, 4321]);
    await fsp.chmod(f, 0o4755);
    await fsp.chown(f, 2345, -1);
    st = await fsp.stat(f);
    expect(st.uid).toBe(2345);
    expect(st.mode & 0o7777).toBe(0o755);
    // a symlink itself
    await fsp.symlink('f', j(dir, 'l'));
    await fsp.lchown(j(dir, 'l'), 3456, 3457);
    const ls = await fsp.lstat(j(dir, 'l'));
    expect([ls.uid, ls.gid]).toEqual([3456, 3457]);
    expect((await fsp.stat(f)).uid).toBe(2345);
  },

  'utimensat with nanoseconds, UTIME_OMIT and UTIME_NOW': async (dir) => {
    const f = j(dir, 'f');
    await fsp.writeFile(f, '');
    const at = 1_600_000_000_123_456_789n;
    const mt = 1_500_000_000_987_654_321n;
    await py(`os.utime(args[0], ns=(${at}, ${mt}))`, f);
    let st = await statB(f);
    expect(st.atimeNs).toBe(at);
    expect(st.mtimeNs).toBe(mt);
    // atime UTIME_OMIT, mtime explicit
    await py(`
      class TS(ctypes.Structure): _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]
      UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
      t = (TS * 2)(TS(0, UTIME_OMIT), TS(1234567890, 5))
      check(libc.utimensat(AT_FDCWD, os.fsencode(args[0]), t, 0))
    `, f);
    st = await statB(f);
    expect(st.atimeNs).toBe(at);
    expect(st.mtimeNs).toBe(1_234_567_890_000_000_005n);
    // mtime UTIME_NOW
    const before = BigInt(Date.now() - 5000) * 1_000_000n;
    await py(`
      class TS(ctypes.Structure): _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]
      UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
      t = (TS * 2)(TS(0, UTIME_OMIT), TS(0, UTIME_NOW))
      check(libc.utimensat(AT_FDCWD, os.fsencode(args[0]), t, 0))
    `, f);
    st = await statB(f);
    expect(st.atimeNs).toBe(at);
    expect(st.mtimeNs).toBeGreaterThan(before);
  },

  'lutimes changes the symlink, not its target': async (dir) => {
    const f = j(dir, 'f');
    await fsp.writeFile(f, '');
    await fsp.symlink('f', j(dir, 'l'));
    const ft = (await statB(f)).mtimeNs;
    await py(`os.utime(args[0], ns=(2_000_000_000_000000001, 2_000_000_000_000000002), follow_symlinks=False)`, j(dir, 'l'));
    const ls = await statB(j(dir, 'l'));
    expect(ls.mtimeNs).toBe(2_000_000_000_000_000_002n);
    expect(ls.atimeNs).toBe(2_000_000_000_000_000_001n);
    expect((await statB(f)).mtimeNs).toBe(ft);
  },

  'xattrs user.*: set, get, list, remove, ENODATA, XATTR_CREATE/REPLACE': async (dir) => {
    const f = j(dir, 'f');
    await fsp.writeFile(f, '');
    const r = await py<Record<string, unknown>>(`
      p = args[0]
      res = {}
      res['missing'] = err(lambda: os.getxattr(p, 'user.none'))
      os.setxattr(p, 'user.a', b'alpha')
      os.setxattr(p, 'user.b', bytes(range(256)))
      os.setxattr(p, 'user.empty', b'')
      res['a'] = os.getxattr(p, 'user.a').decode()
      res['b'] = os.getxattr(p, 'user.b') == bytes(range(256))
      res['empty'] = os.getxattr(p, 'user.empty').hex()
      res['list'] = sorted(n for n in os.listxattr(p) if n.startswith('user.'))
      res['create'] = err(lambda: os.setxattr(p, 'user.a', b'x', os.XATTR_CREATE))
      res['replaceMissing'] = err(lambda: os.setxattr(p, 'user.c', b'x', os.XATTR_REPLACE))
      res['replace'] = err(lambda: os.setxattr(p, 'user.a', b'beta', os.XATTR_REPLACE))
      res['a2'] = os.getxattr(p, 'user.a').decode()
      os.removexattr(p, 'user.a')
      res['removed'] = err(lambda: os.getxattr(p, 'user.a'))
      res['removeMissing'] = err(lambda: os.removexattr(p, 'user.a'))
      res['list2'] = sorted(n for n in os.listxattr(p) if n.startswith('user.'))
      # a too-small buffer is ERANGE (python retries with the right size, so ask libc directly)
      libc.getxattr.restype = ctypes.c_ssize_t
      buf = ctypes.create_string_buffer(2)
      rc = libc.getxattr(os.fsencode(p), b'user.b', buf, ctypes.c_size_t(2))
      res['erange'] = errno.errorcode.get(ctypes.get_errno()) if rc < 0 else rc
      res['probe'] = libc.getxattr(os.fsencode(p), b'user.b', None, ctypes.c_size_t(0))
      out(res)
    `, f);
    expect(r).toEqual({
      missing: 'ENODATA', a: 'alpha', b: true, empty: '', list: ['user.a', 'user.b', 'user.empty'],
      create: 'EEXIST', replaceMissing: 'ENODATA', replace: 'OK', a2: 'beta', removed: 'ENODATA',
      removeMissing: 'ENODATA', list2: ['user.b', 'user.empty'], erange: 'ERANGE', probe: 256,
    });
  },

  'xattrs on a directory; user.* on a symlink is EPERM': async (dir) => {
    await fsp.mkdir(j(dir, 'd'));
    await fsp.symlink('d', j(dir, 'l'));
    const r = await py<Record<string, string>>(`
      d, l = args[0] + '/d', args[0] + '/l'
      os.setxattr(d, 'user.k', b'v')
      out({'d': os.getxattr(d, 'user.k').decode(),
           'viaLink': os.getxattr(l, 'user.k').decode(),
           'linkItself': err(lambda: os.setxattr(l, 'user.k', b'v', follow_symlinks=False)),
           'bad': err(lambda: os.setxattr(d, 'nonamespace', b'v'))})
    `, dir);
    expect(r).toEqual({ d: 'v', viaLink: 'v', linkItself: 'EPERM', bad: 'EOPNOTSUPP' });
  },

  'statvfs and statfs of the directory': async (dir) => {
    const r = await py<Record<string, number>>(`
      s = os.statvfs(args[0])
      out({'bsize': s.f_bsize, 'frsize': s.f_frsize, 'blocks': s.f_blocks, 'bfree': s.f_bfree,
           'bavail': s.f_bavail, 'files': s.f_files, 'ffree': s.f_ffree, 'namemax': s.f_namemax})
    `, dir);
    expect(r.bsize).toBeGreaterThan(0);
    expect(r.blocks).toBeGreaterThan(0);
    expect(r.bfree).toBeLessThanOrEqual(r.blocks!);
    expect(r.bavail).toBeLessThanOrEqual(r.bfree!);
    expect(r.ffree).toBeLessThanOrEqual(r.files!);
    expect(r.namemax).toBe(255);
    const s = await fsp.statfs(dir);
    expect(s.bsize).toBe(r.bsize);
    expect(s.blocks).toBe(r.blocks);
    expect(s.files).toBe(r.files);
  },

  // ------------------------------------------------------------------ locks
  'flock contended between two processes: EWOULDBLOCK, then free after unlock': async (dir) => {
    const p = j(dir, 'lock');
    await fsp.writeFile(p, '');
    const r = await py<Record<string, string>>(`
      import fcntl
      p = args[0]
      def try_lock(op):
          def fn():
              fd = os.open(p, os.O_RDWR)
              return err(lambda: fcntl.flock(fd, op | fcntl.LOCK_NB))
          return fn
      fd = os.open(p, os.O_RDWR)
      fcntl.flock(fd, fcntl.LOCK_EX)
      res = {'exWhileEx': child(try_lock(fcntl.LOCK_EX)), 'shWhileEx': child(try_lock(fcntl.LOCK_SH))}
      fcntl.flock(fd, fcntl.LOCK_SH)
      res['shWhileSh'] = child(try_lock(fcntl.LOCK_SH))
      res['exWhileSh'] = child(try_lock(fcntl.LOCK_EX))
      fcntl.flock(fd, fcntl.LOCK_UN)
      res['exAfterUn'] = child(try_lock(fcntl.LOCK_EX))
      # a second open file description in the same process conflicts too
      fcntl.flock(fd, fcntl.LOCK_EX)
      fd2 = os.open(p, os.O_RDWR)
      res['sameProcOtherOfd'] = err(lambda: fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB))
      os.close(fd)
      res['afterClose'] = err(lambda: fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB))
      out(res)
    `, p);
    expect(r).toEqual({
      exWhileEx: 'EAGAIN', shWhileEx: 'EAGAIN', shWhileSh: 'OK', exWhileSh: 'EAGAIN', exAfterUn: 'OK',
      sameProcOtherOfd: 'EAGAIN', afterClose: 'OK',
    });
  },

  'fcntl POSIX locks contended between two processes: byte ranges, F_GETLK': async (dir) => {
    const p = j(dir, 'lock');
    await fsp.writeFile(p, Buffer.alloc(100));
    const r = await py<Record<string, unknown>>(`
      import fcntl, struct
      p = args[0]
      FMT = 'hhqqi4x'
      def setlk(fd, typ, start, length):
          fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack(FMT, typ, 0, start, length, 0))
      def getlk(fd, typ, start, length):
          t, w, s, l, pid = struct.unpack(FMT, fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(FMT, typ, 0, start, length, 0)))
          return [t, s, l]
      def other(typ, start, length):
          def fn():
              fd = os.open(p, os.O_RDWR)
              return err(lambda: setlk(fd, typ, start, length))
          return fn
      def other_getlk(typ, start, length):
          def fn():
              fd = os.open(p, os.O_RDWR)
              return json.dumps(getlk(fd, typ, start, length))
          return fn
      fd = os.open(p, os.O_RDWR)
      setlk(fd, fcntl.F_WRLCK, 0, 10)
      setlk(fd, fcntl.F_RDLCK, 50, 10)
      res = {
        'overlapW': child(other(fcntl.F_WRLCK, 5, 10)),
        'disjointW': child(other(fcntl.F_WRLCK, 10, 10)),
        'readOnRead': child(other(fcntl.F_RDLCK, 55, 2)),
        'writeOnRead': child(other(fcntl.F_WRLCK, 55, 2)),
        'getlk': json.loads(child(other_getlk(fcntl.F_WRLCK, 0, 0))),
        'getlkFree': json.loads(child(other_getlk(fcntl.F_WRLCK, 20, 10))),
      }
      setlk(fd, fcntl.F_UNLCK, 0, 0)
      res['afterUnlock'] = child(other(fcntl.F_WRLCK, 0, 0))
      out(res)
    `, p);
    // POSIX allows EACCES or EAGAIN for a conflicting F_SETLK
    expect(['EAGAIN', 'EACCES']).toContain(r.overlapW);
    expect(['EAGAIN', 'EACCES']).toContain(r.writeOnRead);
    expect(r.disjointW).toBe('OK');
    expect(r.readOnRead).toBe('OK');
    expect(r.getlk).toEqual([1 /* F_WRLCK */, 0, 10]);
    expect(r.getlkFree).toEqual([2 /* F_UNLCK */, 20, 10]);
    expect(r.afterUnlock).toBe('OK');
  },

  'OFD locks conflict between two open file descriptions of one process': async (dir) => {
    const p = j(dir, 'lock');
    await fsp.writeFile(p, Buffer.alloc(100));
    const r = await py<Record<string, string>>(`
      import fcntl, struct
      FMT = 'hhqqi4x'
      def setlk(fd, typ, start, length):
          fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(FMT, typ, 0, start, length, 0))
      a = os.open(args[0], os.O_RDWR)
      b = os.open(args[0], os.O_RDWR)
      setlk(a, fcntl.F_WRLCK, 0, 10)
      res = {'conflict': err(lambda: setlk(b, fcntl.F_WRLCK, 0, 1)), 'disjoint': err(lambda: setlk(b, fcntl.F_WRLCK, 10, 1))}
      c = os.dup(a)
      res['dupShares'] = err(lambda: setlk(c, fcntl.F_WRLCK, 0, 5))
      os.close(a)
      res['stillHeldByDup'] = err(lambda: setlk(b, fcntl.F_WRLCK, 0, 1))
      os.close(c)
      # FUSE sends RELEASE asynchronously after the last close: the lock goes when it arrives
      # (at once on a local filesystem), so poll briefly
      import time
      deadline = time.time() + 2
      while True:
          res['released'] = err(lambda: setlk(b, fcntl.F_WRLCK, 0, 1))
          if res['released'] == 'OK' or time.time() > deadline: break
          time.sleep(0.01)
      out(res)
    `, p);
    expect(r).toEqual({ conflict: 'EAGAIN', disjoint: 'OK', dupShares: 'OK', stillHeldByDup: 'EAGAIN', released: 'OK' });
  },

  // ------------------------------------------------------------------ special files
  'FIFO entry: mkfifo, stat shows the type (never opened)': async (dir) => {
    await py(`os.mkfifo(args[0] + '/fifo', 0o640)`, dir);
    const st = await fsp.lstat(j(dir, 'fifo'));
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o777).toBe(0o640);
    const [d] = await fsp.readdir(dir, { withFileTypes: true });
    expect(d!.isFIFO()).toBe(true);
    await fsp.rename(j(dir, 'fifo'), j(dir, 'fifo2'));
    expect((await fsp.lstat(j(dir, 'fifo2'))).isFIFO()).toBe(true);
    await fsp.unlink(j(dir, 'fifo2'));
  },

  'unix socket entry: bind creates it, stat shows the type': async (dir) => {
    await py(`
      import socket
      os.chdir(args[0])
      s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
      s.bind('sock')
      s.close()
    `, dir);
    const st = await fsp.lstat(j(dir, 'sock'));
    expect(st.isSocket()).toBe(true);
    const [d] = await fsp.readdir(dir, { withFileTypes: true });
    expect(d!.isSocket()).toBe(true);
    await fsp.unlink(j(dir, 'sock'));
  },

  'mknod: a regular file and a character device (never opened)': async (dir) => {
    const r = await py<{ rdev: number[] }>(`
      os.mknod(args[0] + '/reg', stat.S_IFREG | 0o600)
      os.mknod(args[0] + '/null', stat.S_IFCHR | 0o600, os.makedev(1, 3))
      st = os.lstat(args[0] + '/null')
      out({'rdev': [os.major(st.st_rdev), os.minor(st.st_rdev)]})
    `, dir);
    expect(r.rdev).toEqual([1, 3]);
    expect((await fsp.lstat(j(dir, 'reg'))).isFile()).toBe(true);
    expect((await fsp.lstat(j(dir, 'reg'))).size).toBe(0);
    expect((await fsp.lstat(j(dir, 'null'))).isCharacterDevice()).toBe(true);
  },

  'O_TMPFILE: an unnamed file, usable, then linked into the directory': async (dir) => {
    const r = await py<Record<string, unknown>>(`
      fd = os.open(args[0], os.O_TMPFILE | os.O_RDWR, 0o600)
      os.write(fd, b'tmpdata')
      st = os.fstat(fd)
      res = {'nlink0': st.st_nlink, 'listed': os.listdir(args[0]), 'back': os.pread(fd, 7, 0).decode()}
      # linkat(AT_SYMLINK_FOLLOW) through /proc (python's os.link uses link(2), which does not follow)
      check(libc.linkat(AT_FDCWD, b'/proc/self/fd/%d' % fd, AT_FDCWD, os.fsencode(args[0] + '/named'), 0x400))
      res['nlink1'] = os.fstat(fd).st_nlink
      out(res)
    `, dir);
    expect(r).toEqual({ nlink0: 0, listed: [], back: 'tmpdata', nlink1: 1 });
    expect(await fsp.readFile(j(dir, 'named'), 'utf8')).toBe('tmpdata');
  },
};

/** What each case needs beyond a writable directory (see Need). */
export const needs: Record<string, Need[]> = {
  'chown to another user and group; chown clears setuid': ['root'],
  'mknod: a regular file and a character device (never opened)': ['root'],
  'xattrs user.*: set, get, list, remove, ENODATA, XATTR_CREATE/REPLACE': ['user-xattr'],
  'xattrs on a directory; user.* on a symlink is EPERM': ['user-xattr'],
  'O_TMPFILE: an unnamed file, usable, then linked into the directory': ['tmpfile'],
  'mmap: shared writes reach the file, file writes reach the mapping': ['shared-mmap'],
};
