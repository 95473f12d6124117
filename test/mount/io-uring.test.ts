// FUSE over io_uring (--io-uring): the kernel's switch (enable_uring) is turned on around a
// server's start and put back, also on failure (test/helpers/uring.ts). Client processes pinned
// to each CPU create, write, rename, link and unlink through the mount; their requests reach the
// ring queue of their CPU, served by the thread bound there (metadata handed to the owner and
// answered back through that thread's ring). The host tree must be what the clients made, and the
// stats must show that the rings, not /dev/fuse, carried the requests.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../helpers/child.js';
import { mountSkipReason, runCli, startMount, withMount } from '../helpers/mount.js';
import { mountAt, mountDirs } from '../helpers/mounts.js';
import { uringParam, uringSkipReason, withUringParam } from '../helpers/uring.js';

const skip = mountSkipReason() ?? uringSkipReason();
const cpus = availableParallelism();
const RELOCK = fileURLToPath(new URL('./fixtures/release-relock.py', import.meta.url));

// Makes dir/c<cpu>/: files written and read back, half renamed, a hard link each fourth, every
// third unlinked, then lists it. Prints the sorted listing with sizes.
const CLIENT = String.raw`
import os, sys
root, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = os.path.join(root, 'c' + tag)
os.mkdir(d)
for i in range(n):
    p = os.path.join(d, 'f%d' % i)
    data = (b'%s-%d-' % (tag.encode(), i)) * (i + 1)
    with open(p, 'wb') as f: f.write(data)
    with open(p, 'rb') as f:
        if f.read() != data: print('read back of %s differs' % p); sys.exit(1)
    if i % 2 == 0: os.rename(p, p + '.r'); p = p + '.r'
    if i % 4 == 0: os.link(p, p + '.l')
    if i % 3 == 0: os.unlink(p)
    os.stat(d)
out = []
for name in sorted(os.listdir(d)):
    out.append('%s %d' % (name, os.stat(os.path.join(d, name)).st_size))
print('\n'.join(out))
`;

interface RingStats {
  ioUring: boolean;
  ringRequests: number;
  threads: number;
  perThread: { requests: number; served: number; handedOver: number; answeredAtOnce: number; farReads: number }[];
  ringFarReads: number;
  ringSentHome: number;
  openHandles: number;
}

// Reads FILE front to back in 1 MiB reads (the kernel's readahead turns them into large READs), or
// with 'random' 200 reads of 4 KiB at random places without readahead; prints the sha256 of what it read.
const READER = String.raw`
import hashlib, os, random, sys
path, how = sys.argv[1], sys.argv[2]
h = hashlib.sha256()
fd = os.open(path, os.O_RDONLY)
if how == 'random':
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    size = os.fstat(fd).st_size
    rnd = random.Random(7)
    for _ in range(200):
        h.update(os.pread(fd, 4096, rnd.randrange(0, size // 4096) * 4096))
else:
    while True:
        b = os.read(fd, 1 << 20)
        if not b: break
        h.update(b)
os.close(fd)
print(h.hexdigest())
`;

async function readStats(dir: string): Promise<RingStats> {
  await sleep(1200);
  return JSON.parse(fs.readFileSync(join(dir, 'stats.json'), 'utf8')) as RingStats;
}

function hostListing(dir: string): string {
  return fs.readdirSync(dir).sort().map((name) => `${name} ${fs.statSync(join(dir, name)).size}`).join('\n');
}

/** One unpinned client of 20 files: its listing must be the host's; then the server's stats. */
/** `cpu`: the client runs bound to it (over the rings, its requests come on that CPU's queue) */
async function clientThenStats(t: { mnt: string; orig: string; dir: string }, tag: string, cpu?: number): Promise<RingStats> {
  const py = ['python3', '-c', CLIENT, t.mnt, tag, '20'];
  const r = cpu === undefined ? await run(py[0]!, py.slice(1), { timeoutMs: 30_000 }) : await run('taskset', ['-c', String(cpu), ...py], { timeoutMs: 30_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout.trim()).toBe(hostListing(join(t.orig, `c${tag}`)));
  return readStats(t.dir);
}

// skipped without mounts (not root, no /dev/fuse, no build) or without the kernel's switch (a
// kernel before 6.14 or without CONFIG_FUSE_IO_URING): the reason is in the title
describe.skipIf(skip !== null)(`FUSE over io_uring${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('--io-uring on --threads 2: clients on each CPU are served over the rings; the host tree is what they made', { timeout: 120_000 }, async () => {
    const before = uringParam();
    const t = await withUringParam('Y', () => startMount({
      args: ['--io-uring', 'on', '--threads', '2', '--cache', 'never', '--stats-file', '{dir}/stats.json', '--log-level', 'info'],
    }));
    try {
      // the switch is back as it was; the connection keeps its rings
      expect(uringParam()).toBe(before);
      expect(t.serverLog()).toMatch(/mounted .* \(raw, fd budget \d+, reopen by \w+, 2 threads, io_uring\)/);
      const on = Array.from({ length: Math.min(cpus, 2) }, (_, cpu) => cpu);
      const clients = on.map((cpu) =>
        run('taskset', ['-c', String(cpu), 'python3', '-c', CLIENT, t.mnt, String(cpu), '60'], { timeoutMs: 60_000 }));
      const results = await Promise.all(clients);
      for (const [i, r] of results.entries()) {
        expect(r.status, `${r.stdout}${r.stderr}\n${t.serverLog()}`).toBe(0);
        expect(r.stdout.trim(), `client on CPU ${i}`).toBe(hostListing(join(t.orig, `c${i}`)));
        expect(r.stdout.trim().split('\n').length).toBeGreaterThan(30);
      }
      // a file flocked and closed on the last CPU is free to lock again at once (its RELEASE is
      // answered there at once, the owner closes the file after)
      const relock = await run('python3', [RELOCK, t.mnt, '100'], { timeoutMs: 30_000 });
      expect(relock.status, `${relock.stdout}${relock.stderr}\n${t.serverLog()}`).toBe(0);
      expect(relock.stdout.trim()).toBe('0 0');
      const stats = await readStats(t.dir);
      console.log(`ring requests ${stats.ringRequests}; per thread ${JSON.stringify(stats.perThread)}`);
      expect(stats.ioUring).toBe(true);
      expect(stats.threads).toBe(2);
      // the owner's ring served the client on CPU 0
      expect(stats.ringRequests).toBeGreaterThan(300);
      if (on.length === 2) {
        // CPU 1's queue is the other thread's: it served the reads and writes and handed the rest
        // over (answered through the owner's ring, which then holds the entry)
        expect(stats.perThread[1]!.served).toBeGreaterThan(30);
        expect(stats.perThread[1]!.handedOver).toBeGreaterThan(0);
        // and answered the RELEASEs of its callers itself
        expect(stats.perThread[1]!.answeredAtOnce).toBeGreaterThan(10);
      }
      expect(stats.openHandles).toBe(0);
    } finally {
      await t.cleanup();
    }
    expect(t.exited()).toEqual({ code: 0, signal: null });
  });

  it('--io-uring on with one thread: every queue is the owner\'s; a file written and renamed reads back', { timeout: 60_000 }, async () => {
    const t = await withUringParam('Y', () => startMount({ args: ['--io-uring', 'on', '--threads', '1', '--stats-file', '{dir}/stats.json'] }));
    try {
      const stats = await clientThenStats(t, 'x');
      expect(stats.ioUring).toBe(true);
      expect(stats.ringRequests).toBeGreaterThan(50);
    } finally {
      await t.cleanup();
    }
    expect(t.exited()).toEqual({ code: 0, signal: null });
  });

  // A streaming reader's readahead comes as large READs on the queue of its CPU; they are served by
  // the thread of the other CPU (FAR_READ in threads.ts): a reader on the owner's CPU has them
  // handed to the other thread, one on the other thread's CPU to the owner. 4 KiB reads stay.
  it.skipIf(cpus < 2)('--io-uring on --threads 2: a streaming reader on either CPU is served from the other one and reads what the host has; 4 KiB reads stay on their CPU', { timeout: 120_000 }, async () => {
    const data = Buffer.alloc(24 << 20);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    const host = createHash('sha256').update(data).digest('hex');
    const t = await withUringParam('Y', () => startMount({
      args: ['--io-uring', 'on', '--threads', '2', '--stats-file', '{dir}/stats.json'],
      setup: (orig) => fs.writeFileSync(join(orig, 'big.bin'), data),
    }));
    try {
      const file = join(t.mnt, 'big.bin');
      for (const cpu of ['0', '1']) {
        const r = await run('taskset', ['-c', cpu, 'python3', '-c', READER, file, 'stream'], { timeoutMs: 60_000 });
        expect(r.status, `${r.stderr}\n${t.serverLog()}`).toBe(0);
        expect(r.stdout.trim(), `reader on CPU ${cpu}`).toBe(host);
      }
      const streamed = await readStats(t.dir);
      console.log(`far READs: owner ${streamed.ringFarReads}, thread ${streamed.perThread[1]!.farReads}; per thread ${JSON.stringify(streamed.perThread)}`);
      // the reader on CPU 0 (the owner's queue): its large READs went to the other thread
      expect(streamed.ringFarReads).toBeGreaterThan(0);
      // the reader on CPU 1 (the other thread's queue): they went to the owner
      expect(streamed.perThread[1]!.farReads).toBeGreaterThan(0);
      // the same 4 KiB reads (same seed) through the mount and on the host
      const r = await run('taskset', ['-c', '1', 'python3', '-c', READER, file, 'random'], { timeoutMs: 60_000 });
      expect(r.status, `${r.stderr}\n${t.serverLog()}`).toBe(0);
      const onHost = await run('python3', ['-c', READER, join(t.orig, 'big.bin'), 'random'], { timeoutMs: 60_000 });
      expect(r.stdout.trim()).toBe(onHost.stdout.trim());
      const after = await readStats(t.dir);
      expect(after.ringFarReads).toBe(streamed.ringFarReads);
      expect(after.perThread[1]!.farReads).toBe(streamed.perThread[1]!.farReads);
      expect(after.perThread[1]!.served).toBeGreaterThan(streamed.perThread[1]!.served + 150);
    } finally {
      await t.cleanup();
    }
    expect(t.exited()).toEqual({ code: 0, signal: null });
  });

  // The large READs of a reader on CPU 1 are handed to the owner, which commits them through its
  // own ring: the other thread's entries are then the owner's, and the kernel hands a queue's most
  // recently committed entry the next request. Kept there, every later lookup of a client on CPU 1
  // reached the owner (the owner served 30,258 such requests, the thread 5): the owner sends the
  // entries home with the requests the thread has handlers for (routeRing).
  it.skipIf(cpus < 2)('--io-uring on --threads 2: after a streaming read on CPU 1, that CPU\'s lookups are the other thread\'s again and agree with the host', { timeout: 120_000 }, async () => {
    const names = Array.from({ length: 20 }, (_, i) => `k${i}`);
    const t = await withUringParam('Y', () => startMount({
      args: ['--io-uring', 'on', '--threads', '2', '--cache', 'never', '--stats-file', '{dir}/stats.json'],
      setup: (orig) => {
        fs.writeFileSync(join(orig, 'big.bin'), Buffer.alloc(8 << 20, 7));
        for (const [i, n] of names.entries()) fs.writeFileSync(join(orig, n), 'x'.repeat(i));
      },
    }));
    // 500 rounds of lstat of each name; prints the last round's inode number and size per name
    const LSTATS = String.raw`
import os, sys
root, names = sys.argv[1], sys.argv[2:]
for r in range(500):
    out = [(n, os.lstat(os.path.join(root, n))) for n in names]
print('\n'.join('%s %d %d' % (n, st.st_ino, st.st_size) for n, st in out))
`;
    const host = names.map((n) => { const st = fs.lstatSync(join(t.orig, n)); return `${n} ${st.ino} ${st.size}`; }).join('\n');
    try {
      // the owner learns the names, then the reader on CPU 1 hands its large READs over
      const warm = await run('taskset', ['-c', '1', 'python3', '-c', LSTATS, t.mnt, ...names], { timeoutMs: 60_000 });
      expect(warm.status, `${warm.stderr}\n${t.serverLog()}`).toBe(0);
      const r = await run('taskset', ['-c', '1', 'python3', '-c', READER, join(t.mnt, 'big.bin'), 'stream'], { timeoutMs: 60_000 });
      expect(r.status, `${r.stderr}\n${t.serverLog()}`).toBe(0);
      const streamed = await readStats(t.dir);
      expect(streamed.perThread[1]!.farReads).toBeGreaterThan(0);
      const l = await run('taskset', ['-c', '1', 'python3', '-c', LSTATS, t.mnt, ...names], { timeoutMs: 60_000 });
      expect(l.status, `${l.stderr}\n${t.serverLog()}`).toBe(0);
      expect(l.stdout.trim()).toBe(host);
      const after = await readStats(t.dir);
      const threadServed = after.perThread[1]!.served - streamed.perThread[1]!.served;
      const ownerServed = after.perThread[0]!.served - streamed.perThread[0]!.served;
      console.log(`10,000 lstats on CPU 1 after the stream: the other thread served ${threadServed}, the owner ${ownerServed}; sent home ${after.ringSentHome}`);
      // at least a LOOKUP per lstat, nearly all of them the other thread's
      expect(threadServed).toBeGreaterThan(9_000);
      expect(ownerServed).toBeLessThan(1_000);
      expect(after.ringSentHome).toBeGreaterThan(0);
    } finally {
      await t.cleanup();
    }
    expect(t.exited()).toEqual({ code: 0, signal: null });
  });

  // auto stays on /dev/fuse with the switch off, and with one serving thread even with it on (one
  // thread serving every queue was measured not to pay)
  for (const [param, threads, when] of [['N', '2', 'with the switch off'], ['Y', '1', 'with one serving thread, even with the switch on']] as const) {
    it(`--io-uring auto ${when} serves over /dev/fuse`, { timeout: 60_000 }, async () => {
      await withUringParam(param, () => withMount({ args: ['--io-uring', 'auto', '--threads', threads, '--stats-file', '{dir}/stats.json'] }, async (t) => {
        expect(t.serverLog()).not.toMatch(/io_uring/);
        const stats = await clientThenStats(t, `a${threads}`);
        expect(stats.ioUring).toBe(false);
        expect(stats.ringRequests).toBe(0);
      }));
    });
  }

  // without --threads: one serving thread per CPU where root switched the rings on (where they were
  // measured to pay), one elsewhere; run as given in every project (no --threads or --supervise added)
  for (const [param, when] of [['Y', 'the switch on'], ['N', 'the switch off']] as const) {
    it(`without --threads, with ${when}: ${param === 'Y' ? 'one serving thread per CPU over the rings' : 'one thread on /dev/fuse'}`, { timeout: 60_000 }, async () => {
      await withUringParam(param, () => withMount({ asGiven: true, args: ['--stats-file', '{dir}/stats.json', '--log-level', 'info'] }, async (t) => {
        // on the first CPU, whose queue is the owner's ring (ringRequests counts that ring's
        // requests): unbound, the client ran on the other CPU for most of them once in CI (49)
        const stats = await clientThenStats(t, `d${param}`, 0);
        const threaded = param === 'Y' && cpus > 1;
        expect(stats.ioUring).toBe(threaded);
        // one thread has no per-thread counters
        expect(stats.threads ?? 1).toBe(threaded ? cpus : 1);
        if (threaded) {
          expect(stats.ringRequests).toBeGreaterThan(50);
          expect(t.serverLog()).toMatch(new RegExp(`FUSE over io_uring is switched on in the kernel: ${cpus} serving threads, one per CPU`));
          expect(t.serverLog()).toMatch(new RegExp(`mounted .* \\(raw, fd budget \\d+, reopen by \\w+, ${cpus} threads, io_uring\\)`));
        } else {
          expect(stats.ringRequests).toBe(0);
          expect(t.serverLog()).toMatch(/mounted .* \(raw, fd budget \d+, reopen by \w+\)/);
        }
      }));
    });
  }

  it('--io-uring on with the switch off: one line saying how to turn it on, exit 1, nothing mounted', async () => {
    const { dir, orig, mnt } = mountDirs('handlefs-uring-');
    try {
      const r = await withUringParam('N', () => runCli(['mount', orig, mnt, '--io-uring', 'on']));
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/--io-uring on: FUSE over io_uring is off in the kernel; as root: echo Y > \/sys\/module\/fuse\/parameters\/enable_uring/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(mountAt(mnt)).toBeNull();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--io-uring with --supervise or fuse-native, or an unknown mode, is a usage error', async () => {
    for (const [extra, msg] of [
      [['--io-uring', 'on', '--supervise'], /--io-uring on needs --frontend raw without --supervise/],
      [['--io-uring', 'on', '--frontend', 'fuse-native'], /--io-uring on needs --frontend raw/],
      [['--io-uring', 'sometimes'], /--io-uring must be one of auto\|on\|off, got 'sometimes'/],
    ] as const) {
      const r = await runCli(['mount', '/tmp', '/tmp', ...extra]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
  });
});
