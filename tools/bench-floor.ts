// What one FUSE round trip costs through handlefs' device loop when the filesystem does nothing:
// a "floor" server in this process answers LOOKUP and GETATTR of one file from constants, through
// the same DevFuseSession (uv_poll, non-blocking read, one promise, write) that serves handlefs;
// beside it, in the same run and alternating, handlefs raw and (with --pll) libfuse's
// passthrough_ll -s, all with --cache never, under a stat loop from another process. Wall time and
// the server's CPU (every thread) per stat. The floor minus passthrough_ll is what the event loop
// and N-API cost per request before any filesystem work; handlefs minus the floor is the filesystem.
// scripts/bench-floor builds passthrough_ll and runs this as root. Not a test: numbers are the machine's.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { DevFuseSession, mountData, openDevFuse } from '../dist/frontends/devfuse/index.js';
import { sys, MS_NODEV, MS_NOSUID } from '../dist/sys/syscalls.js';
import { FloorServer, bareLoop } from './lib/floor.js';
import { CLI } from './lib/repo.js';
import { forceUnmount, mountAt } from './lib/mounts.js';
import { killPid, run } from './lib/run.js';
import { parseCli } from './lib/args.js';

const cli = parseCli({
  prog: 'bench-floor',
  usage: `usage: scripts/bench-floor [--pll PATH] [STATS] [ROUNDS]

Microseconds per stat(2) (wall) and server CPU per stat, STATS stats per round (default 20000),
ROUNDS rounds (default 3) alternating the servers: the floor (the device loop of handlefs answering
from constants, no filesystem), handlefs raw, and with --pll passthrough_ll -s; all --cache never.
Medians. Runs as root (it mounts).`,
  options: { pll: { type: 'string' } },
  maxPositionals: 2,
});
const STATS = cli.wholeNumber('STATS', cli.positionals[0], 20000, 100, 10_000_000);
const ROUNDS = cli.wholeNumber('ROUNDS', cli.positionals[1], 3, 1, 100);
if (process.getuid?.() !== 0) cli.fail('run as root: it mounts');
const PLL = cli.values.pll ?? null;

const TICK_US = 1e6 / 100; // /proc/PID/stat counts CPU in clock ticks (USER_HZ 100)
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

/** utime + stime of a process (every thread), in microseconds. */
function cpuOfPid(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * TICK_US;
}

const CLIENT = `
import os, sys, time
p, n = sys.argv[1], int(sys.argv[2])
os.stat(p)
t = time.perf_counter()
for _ in range(n): os.stat(p)
print((time.perf_counter() - t) * 1e6 / n)
`;

/** The stat loop in another process (never from this one: it may be the server); us per stat. */
async function statLoop(file: string): Promise<number> {
  const r = await run('python3', ['-c', CLIENT, file, String(STATS)], { timeoutMs: 60_000 + STATS * 2 });
  if (r.status !== 0) throw new Error(`the stat loop failed (${r.status ?? r.signal}${r.timedOut ? ', timed out' : ''}): ${r.stderr.trim()}`);
  return Number(r.stdout.trim());
}

/** the server process of the round under way, if it is another process */
let current: number | null = null;

interface Sample {
  us: number;
  cpu: number;
}

/**
 * A worker thread per CPU, each bound to its CPU and reading its own clone of the connection
 * (FUSE_DEV_IOC_CLONE); the first channel answers INIT and is then left alone.
 */
async function perCpuFloor(fd: number, server: FloorServer): Promise<{ done: Promise<unknown>; clones: number[] }> {
  const first = bareLoop(fd, server);
  for (let i = 0; i < 500 && !server.negotiated; i++) await new Promise((r) => setTimeout(r, 10));
  if (!server.negotiated) throw new Error('no INIT on the floor mount');
  first.stop();
  const clones: number[] = [];
  const exits: Promise<unknown>[] = [];
  for (let cpu = 0; cpu < os.cpus().length; cpu++) {
    const clone = sys.fuseDevClone(fd);
    clones.push(clone);
    const w = new Worker(new URL('./lib/floor-worker.js', import.meta.url), { workerData: { fd: clone, cpu } });
    exits.push(new Promise((r) => w.once('exit', r)));
  }
  return { done: Promise.all(exits), clones };
}

async function floorRound(mnt: string, mode: 'bare' | 'session' | 'per-cpu'): Promise<Sample> {
  const fd = openDevFuse();
  const data = Buffer.from(mountData(fd, { source: 'floor', mountpoint: mnt, allowOther: false, defaultPermissions: false, readonly: false }, 0, 0));
  sys.mount(Buffer.from('floor'), Buffer.from(mnt), Buffer.from('fuse'), MS_NOSUID | MS_NODEV, data);
  const server = new FloorServer();
  let done: Promise<unknown>;
  let clones: number[] = [];
  if (mode === 'bare') done = bareLoop(fd, server).done;
  else if (mode === 'per-cpu') ({ done, clones } = await perCpuFloor(fd, server));
  else {
    const session = new DevFuseSession(fd, server, pino({ level: 'silent' }));
    session.start();
    done = session.done;
  }
  try {
    const c0 = process.cpuUsage();
    const us = await statLoop(path.join(mnt, 'f'));
    const c = process.cpuUsage(c0);
    return { us, cpu: (c.user + c.system) / STATS };
  } finally {
    await forceUnmount(mnt);
    await done;
    for (const c of clones) fs.closeSync(c);
    fs.closeSync(fd);
  }
}

/** A server in another process: started, mounted, measured, unmounted, waited for. */
async function childRound(cmd: string, args: string[], mnt: string): Promise<Sample> {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  current = child.pid ?? null;
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    for (let i = 0; i < 200 && !mountAt(mnt); i++) await new Promise((r) => setTimeout(r, 50));
    if (!mountAt(mnt)) throw new Error(`${cmd} did not mount ${mnt}: ${err.trim()}`);
    const c0 = cpuOfPid(child.pid!);
    const us = await statLoop(path.join(mnt, 'f'));
    return { us, cpu: (cpuOfPid(child.pid!) - c0) / STATS };
  } finally {
    await forceUnmount(mnt);
    const t = setTimeout(() => killPid(child.pid!, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
    current = null;
  }
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'handlefs-floor-'));
  const share = path.join(work, 'share');
  const mnt = path.join(work, 'mnt');
  // stopped from outside: leave no mount (the floor's is this process's own) and no server behind
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      if (current) killPid(current, 'SIGTERM');
      void forceUnmount(mnt).finally(() => {
        fs.rmSync(work, { recursive: true, force: true });
        process.exit(130);
      });
    });
  }
  fs.mkdirSync(share);
  fs.mkdirSync(mnt);
  fs.writeFileSync(path.join(share, 'f'), 'hi\n');
  const targets: [string, () => Promise<Sample>][] = [
    ['floor: the bare loop (uv_poll, read, answer, write in one callback)', () => floorRound(mnt, 'bare')],
    ['floor: DevFuseSession (its copy and promise per request)', () => floorRound(mnt, 'session')],
    [`floor: ${os.cpus().length} worker threads, one per CPU, each bound to it with its own clone of /dev/fuse (bare loop)`, () => floorRound(mnt, 'per-cpu')],
    ['handlefs raw', () => childRound('node', [CLI, 'mount', share, mnt, '--cache', 'never'], mnt)],
  ];
  if (PLL) targets.push(['passthrough_ll -s', () => childRound(PLL, ['-f', '-s', '-o', `source=${share},cache=never`, mnt], mnt)]);
  const got = new Map<string, Sample[]>(targets.map(([n]) => [n, []]));
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, round] of targets) got.get(name)!.push(await round());
    }
  } finally {
    await forceUnmount(mnt);
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`stat loop, ${STATS} stats per round, medians of ${ROUNDS} rounds, --cache never, ${os.cpus().length} cpus, node ${process.version}, kernel ${os.release()}`);
  console.log('| server | us per stat | server CPU us per stat |');
  console.log('|---|---:|---:|');
  for (const [name] of targets) {
    const s = got.get(name)!;
    console.log(`| ${name} | ${median(s.map((x) => x.us)).toFixed(1)} | ${median(s.map((x) => x.cpu)).toFixed(1)} |`);
  }
}

main().catch((e: unknown) => {
  console.error(`bench-floor: ${(e as Error).message}`);
  process.exitCode = 1;
});
