/**
 * Issue 4's mounted extras beyond the POSIX case table, once per frontend through the real CLI:
 * stat (nanosecond times, the host's inode number), a sparse file beyond 4 GiB, 8 concurrent
 * writer processes, git and sqlite3 working on the mount, and a whole-tree compare of orig/ with
 * mnt/ after a mixed workload. (Rename over files and directories, RENAME_NOREPLACE/EXCHANGE,
 * readdir of 20k entries with seekdir/telldir, unlink while open, fsync, statfs, flock and fcntl
 * locks between two processes and mmap are cases of the table: test/mount/posix.test.ts.)
 *
 * Every client runs in its own process with a timeout; the test process itself only uses async
 * node:fs on the mount (so a hung server cannot block the timeout). Cases a frontend cannot pass
 * are listed in ./frontends.ts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect } from 'vitest';
import { output, run } from '../helpers/child.js';
import { mountSkipReason, useMount } from '../helpers/mount.js';
import { py } from '../posix/util.js';
import { FRONTENDS, frontendArgs, itOn } from './frontends.js';

const skip = mountSkipReason();

interface Entry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  size: number;
  /** sha256 of a file's bytes, a symlink's target, '' else */
  content: string;
}

/** Every entry below root (names as hex, so any byte is kept), lstat'ed, files hashed. */
async function snapshot(root: string, skipNames: readonly string[] = []): Promise<Record<string, Entry>> {
  const out: Record<string, Entry> = {};
  const walk = async (rel: Buffer[]): Promise<void> => {
    const dir = Buffer.concat([Buffer.from(root), ...rel.flatMap((r) => [Buffer.from('/'), r])]);
    const names = (await fsp.readdir(dir, { encoding: 'buffer' })) as Buffer[];
    for (const name of names) {
      if (rel.length === 0 && skipNames.includes(name.toString())) continue;
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      const st = await fsp.lstat(p);
      const key = [...rel, name].map((b) => b.toString('hex')).join('/');
      const e: Entry = { type: 'other', mode: st.mode, size: st.isDirectory() ? 0 : st.size, content: '' };
      if (st.isFile()) {
        e.type = 'file';
        e.content = createHash('sha256').update(await fsp.readFile(p)).digest('hex');
      } else if (st.isSymbolicLink()) {
        e.type = 'symlink';
        e.content = ((await fsp.readlink(p, { encoding: 'buffer' })) as Buffer).toString('hex');
      } else if (st.isDirectory()) {
        e.type = 'dir';
      }
      out[key] = e;
      if (e.type === 'dir') await walk([...rel, name]);
    }
  };
  await walk([]);
  return out;
}

/** Tries, on the file argv[1], an flock and two fcntl locks without blocking; prints the errno names. */
const LOCK_PROBE = `
import os, sys, fcntl, errno, json
fd = os.open(sys.argv[1], os.O_RDWR)
fd2 = os.open(sys.argv[1], os.O_RDWR)
def err(fn):
    try:
        fn(); return 'OK'
    except OSError as e: return errno.errorcode[e.errno]
print(json.dumps({'flock': err(lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)),
                  'posix': err(lambda: fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 25)),
                  'posixFree': err(lambda: fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 20, 40))}))
`;

function client(cmd: string, args: string[], timeoutMs = 30_000, cwd?: string): Promise<string> {
  return output(cmd, args, { timeoutMs, cwd, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: cwd ?? process.env.HOME } });
}

for (const frontend of FRONTENDS) {
  describe.skipIf(skip !== null)(`passthrough extras on a ${frontend} mount${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const mount = useMount({ args: frontendArgs(frontend) });
    let n = 0;
    /** a fresh case directory: [path on the mount, path on the host] */
    const fresh = async (): Promise<[string, string]> => {
      const sub = `x-${n++}`;
      await fsp.mkdir(join(mount().mnt, sub));
      return [join(mount().mnt, sub), join(mount().orig, sub)];
    };

    itOn(frontend, "stat shows the host's inode number (64-bit, bigint compare)", { timeout: 20_000 }, async () => {
      const [d, h] = await fresh();
      fs.writeFileSync(join(h, 'f'), 'x');
      fs.mkdirSync(join(h, 'sub'));
      fs.symlinkSync('f', join(h, 'l'));
      for (const name of ['f', 'sub', 'l']) {
        const host = fs.lstatSync(join(h, name), { bigint: true });
        const via = await fsp.lstat(join(d, name), { bigint: true });
        expect(via.ino).toBe(host.ino);
        expect(via.nlink).toBe(host.nlink);
        expect(via.size).toBe(host.size);
        expect(via.mode).toBe(host.mode);
      }
    });

    itOn(frontend, 'stat shows nanosecond times (atime, mtime, ctime as on the host)', { timeout: 20_000 }, async () => {
      const [d, h] = await fresh();
      const f = join(h, 'f');
      fs.writeFileSync(f, 'x');
      // set on the host with nanoseconds that are not a multiple of a millisecond or microsecond
      await py(`os.utime(args[0], ns=(1_500_000_000_123_456_789, 1_600_000_000_987_654_321))`, f);
      const host = fs.statSync(f, { bigint: true });
      const via = await fsp.stat(join(d, 'f'), { bigint: true });
      expect(via.atimeNs).toBe(1_500_000_000_123_456_789n);
      expect(via.mtimeNs).toBe(1_600_000_000_987_654_321n);
      expect(via.ctimeNs).toBe(host.ctimeNs);
      // and a time set through the mount arrives on the host with its nanoseconds
      await py(`os.utime(args[0], ns=(1_700_000_000_000_000_007, 1_700_000_000_000_000_009))`, join(d, 'f'));
      expect(fs.statSync(f, { bigint: true }).mtimeNs).toBe(1_700_000_000_000_000_009n);
    });

    itOn(frontend, 'open(O_NOFOLLOW) of a regular file reads and writes it (cp -r and sqlite3 open so)', { timeout: 20_000 }, async () => {
      const [d, h] = await fresh();
      fs.writeFileSync(join(h, 'f'), 'hello');
      const r = await py<string>(`
        fd = os.open(args[0], os.O_RDWR | os.O_NOFOLLOW)
        os.pwrite(fd, b'J', 0)
        data = os.pread(fd, 5, 0)
        os.close(fd)
        out(data.decode())
      `, join(d, 'f'));
      expect(r).toBe('Jello');
      expect(fs.readFileSync(join(h, 'f'), 'utf8')).toBe('Jello');
    });

    itOn(frontend, 'sparse file with data beyond 4 GiB and 5 GiB: size, holes read as zeros, few blocks', { timeout: 30_000 }, async () => {
      const [d, h] = await fresh();
      const r = await py<Record<string, number | string>>(`
        fd = os.open(args[0], os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(fd, b'low', 4096)
        os.pwrite(fd, b'across', (1 << 32) - 3)
        os.pwrite(fd, b'high', 5 << 30)
        st = os.fstat(fd)
        res = {'size': st.st_size, 'blocks': st.st_blocks,
               'across': os.pread(fd, 6, (1 << 32) - 3).decode(), 'high': os.pread(fd, 4, 5 << 30).decode(),
               'hole': int(os.pread(fd, 65536, 3 << 30) == bytes(65536))}
        os.close(fd)
        out(res)
      `, join(d, 'sparse'));
      expect(r).toMatchObject({ size: 5 * 2 ** 30 + 4, across: 'across', high: 'high', hole: 1 });
      expect(r.blocks as number).toBeLessThan(1024);
      const host = fs.statSync(join(h, 'sparse'));
      expect(host.size).toBe(5 * 2 ** 30 + 4);
      expect(host.blocks).toBeLessThan(1024);
      const fd = fs.openSync(join(h, 'sparse'), 'r');
      try {
        const b = Buffer.alloc(6);
        fs.readSync(fd, b, 0, 6, 2 ** 32 - 3);
        expect(b.toString()).toBe('across');
      } finally {
        fs.closeSync(fd);
      }
      // not left for the tree compare to hash 5 GiB
      await fsp.unlink(join(d, 'sparse'));
    });

    itOn(frontend, '8 concurrent writer processes (disjoint regions of one file and a file each) match the host', { timeout: 60_000 }, async () => {
      const [d, h] = await fresh();
      const WRITERS = 8;
      const CHUNK = 64 * 1024;
      const CHUNKS = 32; // 2 MiB per writer in each file
      const script = `
import os, sys, hashlib
d, k, chunk, chunks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def block(i):
    return hashlib.sha256(b'%d-%d' % (k, i)).digest() * (chunk // 32)
shared = os.open(d + '/shared', os.O_WRONLY | os.O_CREAT, 0o644)
own = os.open(d + '/own-%d' % k, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(chunks):
    b = block(i)
    # interleave: writer k owns chunk i*8+k of the shared file
    os.pwrite(shared, b, (i * 8 + k) * chunk)
    os.write(own, b)
os.fsync(shared); os.fsync(own)
os.close(shared); os.close(own)
`;
      const rs = await Promise.all(
        Array.from({ length: WRITERS }, (_, k) => run('python3', ['-c', script, d, String(k), String(CHUNK), String(CHUNKS)], { timeoutMs: 50_000 })),
      );
      for (const r of rs) expect(r, r.stderr).toMatchObject({ status: 0, timedOut: false });
      const block = (k: number, i: number): Buffer => {
        const one = createHash('sha256').update(`${k}-${i}`).digest();
        return Buffer.concat(Array.from({ length: CHUNK / 32 }, () => one));
      };
      const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
      const expectShared: Buffer[] = [];
      for (let i = 0; i < CHUNKS; i++) for (let k = 0; k < WRITERS; k++) expectShared.push(block(k, i));
      expect(sha(fs.readFileSync(join(h, 'shared')))).toBe(sha(Buffer.concat(expectShared)));
      expect(sha(await fsp.readFile(join(d, 'shared')))).toBe(sha(Buffer.concat(expectShared)));
      for (let k = 0; k < WRITERS; k++) {
        const want = sha(Buffer.concat(Array.from({ length: CHUNKS }, (_, i) => block(k, i))));
        expect(sha(fs.readFileSync(join(h, `own-${k}`)))).toBe(want);
      }
    });

    itOn(frontend, 'git init, add, commit of a small tree; git fsck and log; the host sees the same repository', { timeout: 60_000 }, async () => {
      const [d, h] = await fresh();
      const repo = join(d, 'repo');
      await fsp.mkdir(repo);
      for (let i = 0; i < 5; i++) {
        await fsp.mkdir(join(repo, `dir${i}`));
        for (let k = 0; k < 6; k++) await fsp.writeFile(join(repo, `dir${i}`, `f${k}.txt`), `file ${i}/${k}\n`.repeat(50 * (k + 1)));
      }
      await fsp.writeFile(join(repo, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
      await fsp.symlink('dir0/f0.txt', join(repo, 'link'));
      const git = (...a: string[]): Promise<string> => client('git', ['-c', 'user.name=t', '-c', 'user.email=t@e', '-c', 'init.defaultBranch=main', '-c', 'safe.directory=*', ...a], 30_000, repo);
      await git('init', '-q');
      await git('add', '-A');
      await git('commit', '-q', '-m', 'first');
      await fsp.writeFile(join(repo, 'dir1', 'f1.txt'), 'changed\n');
      await fsp.rename(join(repo, 'dir2'), join(repo, 'dir2-moved'));
      await git('add', '-A');
      await git('commit', '-q', '-m', 'second');
      await git('fsck', '--full', '--strict');
      expect((await git('log', '--format=%s')).trim().split('\n')).toEqual(['second', 'first']);
      expect((await git('status', '--porcelain')).trim()).toBe('');
      // the host's copy is the same repository, byte for byte (compared first: a host-side git
      // status rewrites the index when the stat data it recorded differs), consistent, same head
      const hrepo = join(h, 'repo');
      expect(await snapshot(hrepo)).toEqual(await snapshot(repo));
      const hgit = (...a: string[]): Promise<string> => client('git', ['-c', 'safe.directory=*', ...a], 30_000, hrepo);
      await hgit('fsck', '--full', '--strict');
      expect(await hgit('rev-parse', 'HEAD')).toBe(await git('rev-parse', 'HEAD'));
      // --no-optional-locks: a host-side status must not rewrite the index behind the mount
      expect((await hgit('--no-optional-locks', 'status', '--porcelain')).trim()).toBe('');
    });

    itOn(frontend, 'sqlite3 creates and queries a database on the mount; the host reads the same answers', { timeout: 60_000 }, async () => {
      const [d, h] = await fresh();
      const sql = `
PRAGMA journal_mode=DELETE;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, v INTEGER NOT NULL);
CREATE INDEX t_v ON t(v);
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000)
INSERT INTO t(id, name, v) SELECT i, 'row-' || i || '-' || hex(randomblob(40)), i * 3 FROM c;
COMMIT;
UPDATE t SET v = v + 1 WHERE id % 10 = 0;
DELETE FROM t WHERE id > 990;
`;
      const r0 = await run('sqlite3', [join(d, 'db.sqlite')], { input: sql, timeoutMs: 30_000 });
      expect(r0, r0.stderr).toMatchObject({ status: 0, timedOut: false });
      const q = 'SELECT count(*), sum(v), min(id), max(id) FROM t; SELECT count(*) FROM t WHERE v % 3 = 1; PRAGMA integrity_check;';
      // sum(3i, i=1..990) = 1471635, plus 1 for each of the 99 ids divisible by 10
      const want = '990|1471734|1|990\n99\nok\n';
      expect(await client('sqlite3', [join(d, 'db.sqlite'), q])).toBe(want);
      expect(await client('sqlite3', [join(h, 'db.sqlite'), q])).toBe(want);
      // the journal is gone on both sides
      expect(fs.readdirSync(h).sort()).toEqual(['db.sqlite']);
    });

    itOn(frontend, 'a file the host replaces (write + rename over) is seen through the mount after the cache timeout', { timeout: 20_000 }, async () => {
      const [d, h] = await fresh();
      fs.writeFileSync(join(h, 'f'), 'old-content');
      expect(await fsp.readFile(join(d, 'f'), 'utf8')).toBe('old-content');
      // the host replaces it the way editors and git do: a new inode renamed over the name
      fs.writeFileSync(join(h, 'f.tmp'), 'NEW-CONTENT');
      fs.renameSync(join(h, 'f.tmp'), join(h, 'f'));
      try {
        // --cache auto: attributes and entries 1 s
        await sleep(1500);
        expect(await fsp.readFile(join(d, 'f'), 'utf8')).toBe('NEW-CONTENT');
        expect((await fsp.stat(join(d, 'f'), { bigint: true })).size).toBe(11n);
      } finally {
        // the tree compare below is about its own workload
        fs.rmSync(join(h, 'f'));
      }
    });

    itOn(frontend, 'flock and fcntl locks held by a host process contend with a client on the mount', { timeout: 30_000 }, async () => {
      const [d, h] = await fresh();
      fs.writeFileSync(join(h, 'f'), 'x'.repeat(100));
      // the host process locks orig/f, then a child process tries the same locks through mnt/f
      const r = await py<Record<string, string>>(`
        import fcntl, subprocess
        host, mnt, probe = args
        fd = os.open(host, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        fd2 = os.open(host, os.O_RDWR)
        fcntl.lockf(fd2, fcntl.LOCK_EX, 10, 20)
        res = json.loads(subprocess.run([sys.executable, '-c', probe, mnt], capture_output=True, timeout=20, check=True).stdout)
        out(res)
      `, join(h, 'f'), join(d, 'f'), LOCK_PROBE);
      expect(r).toEqual({ flock: 'EAGAIN', posix: 'EAGAIN', posixFree: 'OK' });
    });

    itOn(frontend, 'tree compare of the whole orig/ and mnt/ after a mixed workload (names, types, sizes, modes, contents)', { timeout: 60_000 }, async () => {
      const [d] = await fresh();
      // a mixed workload from a client process: create, write, append, truncate, rename, link,
      // symlink, chmod, mkdir/rmdir, unlink
      await client('sh', ['-c', `
set -e
cd "$1"
mkdir -p a/b/c e
for i in $(seq 1 40); do printf 'line %s\\n' $i > a/f$i; done
for i in $(seq 1 40); do printf 'more\\n' >> a/f$i; done
dd if=/dev/urandom of=a/b/big bs=64k count=24 status=none
truncate -s 100000 a/b/big
truncate -s 7 a/f3
mv a/f5 e/moved
mv a/b/c a/cc
ln a/f7 e/hard
ln -s ../a/f8 e/sym
chmod 600 a/f9
chmod 751 a/cc
rm a/f10 a/f11
mkdir gone && rmdir gone
cp -r a a-copy
rm -r a-copy/b
`, 'client', d]);
      // compare the whole tree (every earlier test's leftovers too); the host side never saw the mount
      const host = await snapshot(mount().orig);
      const via = await snapshot(mount().mnt);
      expect(Object.keys(via).length).toBeGreaterThan(100);
      expect(via).toEqual(host);
    });
  });
}
