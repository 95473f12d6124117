/**
 * The fuse-native frontend on a real mount, compared with the host directory. The server runs in
 * a child process (fixture.ts). Needs root, /dev/fuse, libfuse.so.2 and `npx tsc -p tsconfig.json`.
 * Run: npx tsc -p tsconfig.json && npx vitest run --dir test/highlevel
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../helpers/child.js';
import { mountAt } from '../helpers/mounts.js';
import { type Mounted, skipReason, startServer, teardown } from './fixture.js';

const reason = skipReason();
const T = 20_000;

function expectBalanced(c: Record<string, Record<string, number>> | null): void {
  expect(c).not.toBeNull();
  // every lookup the adapter received went back as a forget; the core holds only the root
  expect(c!.after!.pathLookups).toBe(c!.after!.pathForgets);
  expect(c!.after!.paths).toBe(0);
  expect(c!.after!.openHandles).toBe(0);
  expect(c!.core!.inodes).toBe(1);
  expect(c!.core!.openHandles).toBe(0);
}

describe.skipIf(reason !== null)('fuse-native mount', () => {
  let m: Mounted;
  beforeAll(async () => {
    m = await startServer();
  }, 30_000);
  afterAll(async () => {
    if (!m) return;
    const mnt = m.mnt;
    const c = await teardown(m);
    expect(mountAt(mnt)).toBeNull();
    expectBalanced(c);
  }, 30_000);

  const M = (p: string): string => path.join(m.mnt, p);
  const O = (p: string): string => path.join(m.orig, p);

  it('reads and writes like the host', async () => {
    fs.writeFileSync(O('host.txt'), 'from host\n');
    expect(await fsp.readFile(M('host.txt'), 'utf8')).toBe('from host\n');
    await fsp.writeFile(M('w.txt'), 'hello');
    await fsp.appendFile(M('w.txt'), ' world');
    expect(fs.readFileSync(O('w.txt'), 'utf8')).toBe('hello world');
    await fsp.truncate(M('w.txt'), 5);
    expect(fs.readFileSync(O('w.txt'), 'utf8')).toBe('hello');
    const fh = await fsp.open(M('w.txt'), 'r+');
    await fh.truncate(2);
    expect((await fh.stat()).size).toBe(2);
    await fh.sync();
    await fh.close();
    expect(fs.statSync(O('w.txt')).size).toBe(2);
    const st = await fsp.stat(M('host.txt'));
    const hst = fs.statSync(O('host.txt'));
    expect(st.size).toBe(hst.size);
    expect(st.mode).toBe(hst.mode);
    expect(Math.floor(st.mtimeMs)).toBe(Math.floor(hst.mtimeMs));
  }, T);

  it('large writes and reads round-trip (big_writes)', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
    await fsp.writeFile(M('big.bin'), data);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(sha(fs.readFileSync(O('big.bin')))).toBe(sha(data));
    expect(sha(await fsp.readFile(M('big.bin')))).toBe(sha(data));
  }, T);

  it('lists directories like the host, with d_type', async () => {
    fs.mkdirSync(O('ls/sub'), { recursive: true });
    fs.writeFileSync(O('ls/f'), '');
    fs.symlinkSync('f', O('ls/l'));
    const got = (await fsp.readdir(M('ls'), { withFileTypes: true })).map((d) => `${d.name}:${d.isDirectory() ? 'd' : d.isSymbolicLink() ? 'l' : 'f'}`).sort();
    expect(got).toEqual(['f:f', 'l:l', 'sub:d']);
  }, T);

  it('creates, links and removes names', async () => {
    await fsp.mkdir(M('nd'));
    expect(fs.statSync(O('nd')).isDirectory()).toBe(true);
    await fsp.writeFile(M('nd/a'), 'a');
    await fsp.link(M('nd/a'), M('nd/b'));
    expect(fs.statSync(O('nd/a')).nlink).toBe(2);
    await fsp.symlink('a', M('nd/s'));
    expect(fs.readlinkSync(O('nd/s'))).toBe('a');
    expect(await fsp.readlink(M('nd/s'))).toBe('a');
    expect(await fsp.readFile(M('nd/s'), 'utf8')).toBe('a');
    await expect(fsp.rmdir(M('nd'))).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await fsp.unlink(M('nd/a'));
    await fsp.unlink(M('nd/b'));
    await fsp.unlink(M('nd/s'));
    await fsp.rmdir(M('nd'));
    expect(fs.existsSync(O('nd'))).toBe(false);
    await expect(fsp.stat(M('nd'))).rejects.toMatchObject({ code: 'ENOENT' });
    const fh = await fsp.open(M('excl'), 'wx');
    await fh.close();
    await expect(fsp.open(M('excl'), 'wx')).rejects.toMatchObject({ code: 'EEXIST' });
    expect((await run('mkfifo', [M('fifo')])).status).toBe(0);
    expect(fs.statSync(O('fifo')).isFIFO()).toBe(true);
  }, T);

  it('renames a directory whose descendants are cached, and back', async () => {
    fs.mkdirSync(O('ra/b/c'), { recursive: true });
    fs.writeFileSync(O('ra/b/c/f.txt'), 'deep');
    fs.writeFileSync(O('ra/b/g.txt'), 'g');
    // cache the whole subtree in the path table
    expect(await fsp.readFile(M('ra/b/c/f.txt'), 'utf8')).toBe('deep');
    expect(await fsp.readFile(M('ra/b/g.txt'), 'utf8')).toBe('g');
    await fsp.rename(M('ra'), M('rz'));
    expect(fs.existsSync(O('rz/b/c/f.txt'))).toBe(true);
    expect(await fsp.readFile(M('rz/b/c/f.txt'), 'utf8')).toBe('deep');
    await expect(fsp.stat(M('ra/b/c/f.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
    // a new file under the moved directory lands at the new host path
    await fsp.writeFile(M('rz/b/c/new.txt'), 'n');
    expect(fs.readFileSync(O('rz/b/c/new.txt'), 'utf8')).toBe('n');
    // move a subdirectory to another parent, then the top back
    await fsp.mkdir(M('other'));
    await fsp.rename(M('rz/b/c'), M('other/c2'));
    expect(await fsp.readFile(M('other/c2/f.txt'), 'utf8')).toBe('deep');
    await fsp.rename(M('rz'), M('ra'));
    expect(await fsp.readFile(M('ra/b/g.txt'), 'utf8')).toBe('g');
    // rename over an existing file replaces it
    await fsp.writeFile(M('r1'), 'one');
    await fsp.writeFile(M('r2'), 'two');
    await fsp.readFile(M('r2'));
    await fsp.rename(M('r1'), M('r2'));
    expect(await fsp.readFile(M('r2'), 'utf8')).toBe('one');
    expect(fs.existsSync(O('r1'))).toBe(false);
  }, T);

  it('chmod, chown and times (milliseconds; mtime follows atime: fuse-native bug)', async () => {
    await fsp.writeFile(M('attrs'), 'x');
    await fsp.chmod(M('attrs'), 0o640);
    expect(fs.statSync(O('attrs')).mode & 0o7777).toBe(0o640);
    await fsp.chown(M('attrs'), 1234, 5678);
    expect(fs.statSync(O('attrs'))).toMatchObject({ uid: 1234, gid: 5678 });
    const t = new Date('2020-02-03T04:05:06.789Z');
    await fsp.utimes(M('attrs'), t, t);
    const h = fs.statSync(O('attrs'));
    expect(h.mtimeMs).toBe(t.getTime());
    expect(h.atimeMs).toBe(t.getTime());
    expect((await fsp.stat(M('attrs'))).mtimeMs).toBe(t.getTime());
    // different atime and mtime: fuse-native 2.2.6 delivers the atime twice (documented limit)
    const a = new Date('2001-01-01T00:00:00.000Z');
    await fsp.utimes(M('attrs'), a, t);
    expect(fs.statSync(O('attrs')).mtimeMs).toBe(a.getTime());
    // touch (UTIME_NOW) sets the current time
    const before = Date.now() - 2000;
    expect((await run('touch', [M('attrs')])).status).toBe(0);
    expect(fs.statSync(O('attrs')).mtimeMs).toBeGreaterThan(before);
  }, T);

  it('extended attributes, with size probe and ERANGE', async () => {
    await fsp.writeFile(M('xa'), '');
    expect((await run('setfattr', ['-n', 'user.key', '-v', 'value-123', M('xa')])).status).toBe(0);
    const host = await run('getfattr', ['--only-values', '-n', 'user.key', O('xa')]);
    expect(host.stdout).toBe('value-123');
    const via = await run('getfattr', ['--only-values', '-n', 'user.key', M('xa')]);
    expect(via.stdout).toBe('value-123');
    const list = await run('getfattr', ['-d', '-m', '-', M('xa')]);
    expect(list.stdout).toContain('user.key="value-123"');
    const py = await run('python3', ['-c', `
import os, errno
p = ${JSON.stringify(M('xa'))}
try:
    os.getxattr(p, 'user.missing'); print('no error')
except OSError as e: print(errno.errorcode[e.errno])
print(len(os.listxattr(p)))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(64)
print(libc.getxattr(p.encode(), b'user.key', None, 0))
r = libc.getxattr(p.encode(), b'user.key', buf, 2)
print(errno.errorcode[ctypes.get_errno()] if r < 0 else r)
print(libc.listxattr(p.encode(), buf, 1) < 0 and errno.errorcode[ctypes.get_errno()])
`]);
    expect(py.stdout.split('\n').slice(0, 5)).toEqual(['ENODATA', '1', '9', 'ERANGE', 'ERANGE']);
    expect((await run('setfattr', ['-x', 'user.key', M('xa')])).status).toBe(0);
    expect((await run('getfattr', ['-n', 'user.key', O('xa')])).status).not.toBe(0);
  }, T);

  it('statfs reports the host filesystem', async () => {
    const a = await fsp.statfs(M('.'));
    const b = await fsp.statfs(O('.'));
    const bytes = (s: fs.StatsFs): number => s.blocks * s.bsize;
    expect(Math.abs(bytes(a) - bytes(b)) / bytes(b)).toBeLessThan(0.01);
  }, T);

  it('an unlinked open file leaves no .fuse_hidden file and is released', async () => {
    const py = await run('python3', ['-c', `
import os
p = ${JSON.stringify(M('open-unlinked'))}
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'data')
os.unlink(p)
print(sorted(n for n in os.listdir(${JSON.stringify(m.orig)}) if n.startswith('.fuse_hidden')))
try:
    os.pread(fd, 4, 0); print('read ok')
except OSError as e: print('read', e.errno)
os.close(fd)
print('closed')
`]);
    expect(py.stdout).toContain('[]');
    // documented limit: libfuse2 with hard_remove answers I/O on the unlinked file ENOENT
    expect(py.stdout).toContain('read 2');
    expect(py.stdout).toContain('closed');
    expect(fs.readdirSync(m.orig).filter((n) => n.startsWith('.fuse_hidden'))).toEqual([]);
    expect(fs.existsSync(O('open-unlinked'))).toBe(false);
  }, T);

  it('names that are not UTF-8 are left out of listings, without harm', async () => {
    fs.mkdirSync(O('enc'));
    const bad = Buffer.concat([Buffer.from(O('enc') + '/'), Buffer.from([0x62, 0xff, 0x61])]);
    fs.writeFileSync(bad, 'x');
    fs.writeFileSync(O('enc/ok-é'), 'y');
    const names = await fsp.readdir(M('enc'));
    expect(names).toEqual(['ok-é']);
    expect(await fsp.readFile(M('enc/ok-é'), 'utf8')).toBe('y');
    // a name with U+FFFD (what a non-UTF-8 name becomes) is refused, not created under another name
    await expect(fsp.writeFile(M('enc/\ufffd'), 'z')).rejects.toMatchObject({ code: 'EILSEQ' });
    expect(fs.readdirSync(O('enc')).length).toBe(2);
  }, T);
});

describe.skipIf(reason !== null)('fuse-native mount with a small path table', () => {
  it('stays bounded and balanced under eviction', async () => {
    const m = await startServer({ maxPaths: 16 });
    let c: Record<string, Record<string, number>> | null = null;
    try {
      for (let d = 0; d < 5; d++) {
        fs.mkdirSync(path.join(m.orig, `d${d}`));
        for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(m.orig, `d${d}`, `f${i}`), `${d}/${i}`);
      }
      for (let pass = 0; pass < 2; pass++) {
        for (let d = 0; d < 5; d++) {
          for (let i = 0; i < 20; i++) {
            expect(await fsp.readFile(path.join(m.mnt, `d${d}`, `f${i}`), 'utf8')).toBe(`${d}/${i}`);
          }
        }
      }
      await fsp.rename(path.join(m.mnt, 'd0'), path.join(m.mnt, 'e0'));
      expect(await fsp.readFile(path.join(m.mnt, 'e0', 'f7'), 'utf8')).toBe('0/7');
      m.child.stdin!.write('counters\n');
      await sleep(300);
      const live = JSON.parse(m.stdout().split('\n').find((l) => l.startsWith('LIVE '))!.slice(5));
      expect(live.paths).toBeLessThanOrEqual(16);
      expect(live.pathEvictions).toBeGreaterThan(0);
    } finally {
      c = await teardown(m);
    }
    expectBalanced(c);
  }, 60_000);
});
