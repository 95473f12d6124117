/**
 * Persistent client handles and restarting the server without unmounting (issue 8): a client takes
 * FUSE export handles for 1,000 files; the supervised server is upgraded (SIGHUP: new worker, sealed
 * state handed over) and its worker is killed with SIGKILL (restarted from the streamed records);
 * after each, with the kernel's caches dropped, open_by_handle_at opens every file with the right
 * contents, and the mount was never unmounted.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../helpers/child.js';
import { withMount, mountSkipReason } from '../helpers/mount.js';
import { mountAt } from '../helpers/mounts.js';
import { readJson, waitFor } from '../helpers/poll.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PY = path.join(here, 'fixtures/handles.py');
const skip = mountSkipReason();

// the worker reads /dev/fuse itself (Linux 6.9+), and the forwarding supervisor older kernels get
const MODES: Array<{ name: string; env: Record<string, string> }> = [
  { name: 'the worker reads the device', env: {} },
  { name: 'the supervisor forwards each request', env: { HANDLEFS_SUPERVISE_FORWARD: '1' } },
];

/** The supervisor's stats once its worker is another than `old` (restarted or upgraded). */
function nextWorker(stats: string, old: number, what: string): Promise<Record<string, any>> {
  return waitFor(what, () => {
    const s = readJson(`${stats}.supervisor`);
    return s && s.workerPid !== old ? s : null;
  });
}

describe.skipIf(skip !== null).each(MODES)(`persistent handles across restarts, $name${skip ? ` (skipped: ${skip})` : ''}`, ({ env }) => {
  it('1,000 client handles survive an upgrade and a SIGKILL of the worker; the mount stays', async () => {
    const N = 1000;
    const expect_: Record<string, string> = {};
    await withMount({
      args: ['--supervise', '--stats-file', '{dir}/stats'],
      env,
      setup: (orig) => {
        for (let d = 0; d < 10; d++) fs.mkdirSync(path.join(orig, `d${d}`, 'sub'), { recursive: true });
        for (let i = 0; i < N; i++) {
          const rel = `d${i % 10}/sub/f${i}`;
          fs.writeFileSync(path.join(orig, rel), `content of ${i}\n`);
          expect_[rel] = `content of ${i}\n`;
        }
      },
    }, async ({ dir, mnt, pid }) => {
      const stats = path.join(dir, 'stats');
      const list = path.join(dir, 'list');
      fs.writeFileSync(list, Object.keys(expect_).join('\n'));
      fs.writeFileSync(path.join(dir, 'expect.json'), JSON.stringify(expect_));
      const dev0 = fs.statSync(mnt).dev;
      const take = await run('python3', [PY, 'take', mnt, list], { timeoutMs: 60_000 });
      expect(JSON.parse(take.stdout)).toEqual({ taken: N });
      const sup = await waitFor('supervisor stats', () => readJson(`${stats}.supervisor`));
      expect(sup.pid).toBe(pid);
      if ('HANDLEFS_SUPERVISE_FORWARD' in env) expect(sup.resend).toBeUndefined();
      const openAll = async (): Promise<{ ok: number; nfailed: number; failed: unknown[] }> => {
        const r = await run('python3', [PY, 'open', mnt, `${list}.handles`, path.join(dir, 'expect.json')], { timeoutMs: 60_000 });
        return JSON.parse(r.stdout);
      };
      // --- upgrade
      const gen0 = sup.generation;
      const worker0 = sup.workerPid;
      process.kill(pid, 'SIGHUP');
      const up = await waitFor('the upgraded worker', () => {
        const s = readJson(`${stats}.supervisor`);
        return s && s.workerPid !== worker0 && s.generation > gen0 ? s : null;
      });
      const r1 = await openAll();
      expect(r1.failed).toEqual([]);
      expect(r1.ok).toBe(N);
      // --- crash
      process.kill(up.workerPid, 'SIGKILL');
      await nextWorker(stats, up.workerPid, 'the restarted worker');
      const r2 = await openAll();
      expect(r2.failed).toEqual([]);
      expect(r2.ok).toBe(N);
      // the successor brought the inodes back from sealed records
      const w = await waitFor('worker stats', () => {
        const s = readJson(stats);
        return s && s.resurrected > 0 ? s : null;
      });
      expect(w.sealFailures).toBe(0);
      // never unmounted: the same mount, the same device, the same server
      expect(fs.statSync(mnt).dev).toBe(dev0);
      expect(mountAt(mnt)).not.toBeNull();
      expect(fs.readFileSync(path.join(mnt, 'd3/sub/f3'), 'utf8')).toBe('content of 3\n');
    });
  }, 180_000);

  it('directories held open, the root\'s and a subdirectory\'s, keep listing across an upgrade and a SIGKILL of the worker', async () => {
    await withMount({
      args: ['--supervise', '--stats-file', '{dir}/stats'],
      env,
      setup: (orig) => {
        fs.mkdirSync(path.join(orig, 'sub'));
        for (const n of ['a', 'b']) fs.writeFileSync(path.join(orig, n), n);
        fs.writeFileSync(path.join(orig, 'sub', 'c'), 'c');
      },
    }, async ({ dir, mnt, pid }) => {
      const stats = path.join(dir, 'stats');
      // lists both through the fds it opened first (the same FUSE fh each time: listdir reads a dup
      // of the fd from its start), once per marker; prints each listing or its error
      const client = run('python3', ['-c', `
import os, sys, time
mnt, ready, marks = sys.argv[1], sys.argv[2], sys.argv[3:]
fds = [os.open(mnt, os.O_RDONLY | os.O_DIRECTORY), os.open(os.path.join(mnt, 'sub'), os.O_RDONLY | os.O_DIRECTORY)]
def show():
    out = []
    for fd in fds:
        try: out.append(','.join(sorted(os.listdir(fd))))
        except OSError as e: out.append('error ' + os.strerror(e.errno))
    print('|'.join(out), flush=True)
show()
open(ready + '0', 'w').close()
for i, m in enumerate(marks):
    end = time.time() + 30
    while not os.path.exists(m) and time.time() < end: time.sleep(0.05)
    show()
    open(ready + str(i + 1), 'w').close()
`, mnt, path.join(dir, 'listed'), path.join(dir, 'upgraded'), path.join(dir, 'killed')], { timeoutMs: 75_000 });
      const s0 = await waitFor('supervisor stats', () => readJson(`${stats}.supervisor`));
      // the client holds both directories open before the first worker goes
      await waitFor('the client to list', () => (fs.existsSync(path.join(dir, 'listed0')) ? true : null), 30_000);
      process.kill(pid, 'SIGHUP');
      const up = await nextWorker(stats, s0.workerPid, 'the upgraded worker');
      fs.writeFileSync(path.join(dir, 'upgraded'), '');
      // the client lists again (through the upgraded worker) before that one is killed
      await waitFor('the client to list again', () => (fs.existsSync(path.join(dir, 'listed1')) ? true : null), 30_000);
      process.kill(up.workerPid, 'SIGKILL');
      await nextWorker(stats, up.workerPid, 'the restarted worker');
      fs.writeFileSync(path.join(dir, 'killed'), '');
      const r = await client;
      expect(r.status, r.stderr).toBe(0);
      // before, after the upgrade, after the crash: the root lists a, b, sub; sub lists c
      expect(r.stdout.trim().split('\n')).toEqual(['a,b,sub|c', 'a,b,sub|c', 'a,b,sub|c']);
    });
  }, 120_000);

  it('after a crash, writes through an O_TMPFILE\'s fd (it went with the worker) reach no other file, though the new worker may give its node id to the next new file', async () => {
    await withMount({
      args: ['--supervise', '--stats-file', '{dir}/stats'],
      env,
      setup: (orig) => fs.writeFileSync(path.join(orig, 'before'), 'before;'),
    }, async ({ dir, mnt }) => {
      const stats = path.join(dir, 'stats');
      const marker = path.join(dir, 'killed');
      // the O_TMPFILE is the last inode and the last open file the first worker makes; after the
      // crash the client makes a new file, then writes through both fds; prints each write's outcome
      const client = run('python3', ['-c', `
import os, sys, time
mnt, marker = sys.argv[1], sys.argv[2]
with open(os.path.join(mnt, 'before')) as f: f.read()
tfd = os.open(mnt, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(tfd, b'tmp1;')
open(sys.argv[3], 'w').close()
end = time.time() + 30
while not os.path.exists(marker) and time.time() < end: time.sleep(0.05)
ffd = os.open(os.path.join(mnt, 'fresh'), os.O_CREAT | os.O_RDWR, 0o644)
os.write(ffd, b'fresh;')
try:
    os.pwrite(tfd, b'tmp2;', 0)
    os.fsync(tfd)
    print('tmpfile write: ok', flush=True)
except OSError as e:
    print('tmpfile write: ' + os.strerror(e.errno), flush=True)
os.close(ffd)
try: os.close(tfd)
except OSError: pass
`, mnt, marker, path.join(dir, 'opened')], { timeoutMs: 60_000 });
      const s0 = await waitFor('supervisor stats', () => readJson(`${stats}.supervisor`));
      await waitFor('the client to open the O_TMPFILE', () => (fs.existsSync(path.join(dir, 'opened')) ? true : null), 30_000);
      process.kill(s0.workerPid, 'SIGKILL');
      await nextWorker(stats, s0.workerPid, 'the restarted worker');
      fs.writeFileSync(marker, '');
      const r = await client;
      expect(r.status, r.stderr).toBe(0);
      // the new file holds what was written to it, and nothing of the O_TMPFILE's
      expect(fs.readFileSync(path.join(dir, 'orig', 'fresh'), 'utf8')).toBe('fresh;');
      expect(fs.readFileSync(path.join(dir, 'orig', 'before'), 'utf8')).toBe('before;');
      expect(fs.readdirSync(path.join(dir, 'orig')).sort()).toEqual(['before', 'fresh']);
      // the O_TMPFILE went with the worker: its write fails instead of landing elsewhere (the new
      // worker's generation differs: the kernel takes the old inode for stale, EIO)
      expect(r.stdout).toMatch(/tmpfile write: (Bad file descriptor|Stale file handle|Input\/output error)/);
    });
  }, 90_000);

  it('a file held open by a client keeps working across an upgrade (its fh passes to the new worker)', async () => {
    await withMount({
      args: ['--supervise', '--stats-file', '{dir}/stats'],
      env,
      setup: (orig) => fs.writeFileSync(path.join(orig, 'held'), 'start;'),
    }, async ({ dir, mnt, pid }) => {
      const stats = path.join(dir, 'stats');
      const marker = path.join(dir, 'upgraded');
      const client = run('python3', ['-c', `
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_APPEND)
os.write(fd, b'before;')
print('opened', flush=True)
end = time.time() + 30
while not os.path.exists(sys.argv[2]) and time.time() < end: time.sleep(0.05)
os.write(fd, b'after;')
os.lseek(fd, 0, 0)
print(os.read(fd, 100).decode(), flush=True)
`, path.join(mnt, 'held'), marker], { timeoutMs: 45_000 });
      await waitFor('the client to open', () => (fs.readFileSync(path.join(dir, 'orig', 'held'), 'utf8').includes('before;') ? true : null));
      const s0 = await waitFor('supervisor stats', () => readJson(`${stats}.supervisor`));
      process.kill(pid, 'SIGHUP');
      await nextWorker(stats, s0.workerPid, 'the upgraded worker');
      fs.writeFileSync(marker, '');
      const r = await client;
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n').pop()).toBe('start;before;after;');
      expect(fs.readFileSync(path.join(dir, 'orig', 'held'), 'utf8')).toBe('start;before;after;');
    });
  }, 90_000);
});
