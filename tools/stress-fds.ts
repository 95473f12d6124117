/**
 * fd-exhaustion stress run of handlefs (issue 6); scripts/stress-fds runs it. Starts the server in
 * a child process under a small RLIMIT_NOFILE (prlimit) and fd budget, optionally without
 * CAP_DAC_READ_SEARCH (setpriv), builds N files in D directories in a fresh shared directory, then
 * through the mount, from several client processes (tools/stress/client.ts):
 *   stat    readdir every directory, lstat every file (type and size checked)
 *   read    read every file, content compared with the generator
 *   hold    K files open at once (K far above the budget), random reads (compared with each
 *           client's model) and writes, while the host renames directories and replaces files
 *           behind the server's back
 *   verify  every file read through the mount, compared byte for byte with the host, and the
 *           host's bytes compared with the model (base + every acknowledged write, or the
 *           host's replacement)
 * Reports ops/s per phase, the most fds the server held (sampled from /proc/PID/fd; "tree fds"
 * are those on the shared tree), the server's counters (evictions, reopens by path and by
 * handle, ESTALE; from --stats-file), the server's resident memory against the inodes it knows
 * (tools/stress/memory.ts), expected ESTALE and errors. Exit status 0 when nothing was
 * corrupted, no unexpected error happened, the server stayed up and exited cleanly, and its tree
 * fds never exceeded budget + reserve; 1 otherwise; 2 on a usage error.
 *
 * Expected ESTALE (hold phase only): a held file that the host replaced (its old inode has no
 * name any more: once its fd is evicted it cannot be reopened, with or without the capability);
 * without the capability also a held file whose directory the host renamed (the re-walk by path
 * no longer finds it). Every other error is an error.
 *
 * Always unmounts and kills what it started (by pid), on failure and on SIGINT/SIGTERM too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseCli } from './lib/args.js';
import { collect } from './lib/collect.js';
import { forceUnmount, mountAt } from './lib/mounts.js';
import { READY_ENV, waitReady } from './lib/ready.js';
import { CLI, TOOLS_OUT } from './lib/repo.js';
import { killPid } from './lib/run.js';
import { uringUnavailable, withUringParam } from './lib/uring.js';
import { content, dirName, fileName } from './stress/content.js';
import type { ClientError, ClientResult, Corrupt, Job, Phase, PhaseWork } from './stress/job.js';
import { MemorySampler, type MemoryReport } from './stress/memory.js';

const CLIENT = join(TOOLS_OUT, 'stress', 'client.js');
/** fds the server holds outside its budget (root O_PATH + root dir fd + transients), README */
const RESERVE = 8;

const USAGE = `usage: scripts/stress-fds [options]

Stress handlefs with far more open files than its fd budget and RLIMIT_NOFILE, while the host
renames and replaces things behind its back; verify every byte at the end.

options:
  --files N         files in the tree (default 100000)
  --dirs D          directories they are spread over (default 100)
  --open K          files held open at once by the clients (default 5000)
  --budget B|auto   the server's --fd-budget (default 64)
  --nofile S        the server's RLIMIT_NOFILE, soft and hard, through prlimit (default 512; 0 = leave it)
  --no-cap          run the server without CAP_DAC_READ_SEARCH (setpriv): reopen by path
  --workers W       client processes (default 4)
  --hold-seconds T  how long the clients keep reading/writing held files (default 20)
  --cache MODE      the server's --cache (default never: every read and write reaches the server)
  --threads N       the server's serving threads (default 1)
  --io-uring MODE   the server's --io-uring: auto (default), on (the kernel's switch, enable_uring,
                    is turned on for the server's start and put back), off
  --timeout SEC     give up (and fail) after this long in all (default 1800)
  --dir PATH        where to make the work directory handlefs-stress-XXXXXX (default the system temp dir)
  --seed N          seed of the clients' random choices (default 1)
  --json            print a machine-readable summary on stdout (progress stays on stderr)
  --keep            keep the work directory (tree, stats, server log) for inspection
  -h, --help        this text

memory: the summary's "server RSS" line (--json: memory.rssStartBytes, rssPeakBytes, inodesKnown,
bytesPerInode) is the server process's resident set (/proc/PID/status VmRSS every 250 ms, and
VmHWM, the kernel's peak, before it is stopped): everything resident, the node runtime, the V8
heap with its not yet collected garbage, every table of the server, the fds' kernel memory not
included. start = once the mount is live, before the clients walk the tree; peak = the highest
sample or VmHWM; inodes known = the server's "inodes" counter (--stats-file, at most 1 s old) at
the highest sample. bytes per inode = (peak - start) / inodes known; peak / inodes known is shown
too. The workload is more than a walk (open files, fd cache, held writes), so it is an upper
bound of an inode's cost. MB = 10^6 bytes.`;

// ------------------------------------------------------------------ options

const cli = parseCli({
  prog: 'stress-fds',
  usage: USAGE,
  options: {
    files: { type: 'string' }, dirs: { type: 'string' }, open: { type: 'string' }, budget: { type: 'string' },
    nofile: { type: 'string' }, 'no-cap': { type: 'boolean' }, workers: { type: 'string' },
    'hold-seconds': { type: 'string' }, cache: { type: 'string' }, timeout: { type: 'string' },
    dir: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' }, keep: { type: 'boolean' }, threads: { type: 'string' },
    'io-uring': { type: 'string' },
  },
});
const v = cli.values;
const opt = {
  files: cli.wholeNumber('--files', v.files, 100_000, 1, 10_000_000),
  dirs: cli.wholeNumber('--dirs', v.dirs, 100, 1, 100_000),
  open: cli.wholeNumber('--open', v.open, 5000, 0, 1_000_000),
  budget: v.budget ?? '64',
  nofile: cli.wholeNumber('--nofile', v.nofile, 512, 0, 1 << 20),
  cap: !v['no-cap'],
  workers: cli.wholeNumber('--workers', v.workers, 4, 1, 64),
  holdSeconds: cli.wholeNumber('--hold-seconds', v['hold-seconds'], 20, 0, 3600),
  cache: v.cache ?? 'never',
  threads: cli.wholeNumber('--threads', v.threads, 1, 1, 64),
  ioUring: v['io-uring'] ?? 'auto',
  timeoutSec: cli.wholeNumber('--timeout', v.timeout, 1800, 10, 86_400),
  seed: cli.wholeNumber('--seed', v.seed, 1, 0, 2 ** 31),
  json: !!v.json,
  keep: !!v.keep,
};
if (opt.budget !== 'auto' && !/^\d+$/.test(opt.budget)) cli.fail(`--budget needs a number or auto, got '${opt.budget}'`);
if (!['auto', 'on', 'off'].includes(opt.ioUring)) cli.fail(`--io-uring needs auto, on or off, got '${opt.ioUring}'`);
if (opt.ioUring === 'on' && uringUnavailable()) cli.fail(`--io-uring on: ${uringUnavailable()}`);
if (opt.open > opt.files) cli.fail(`--open (${opt.open}) cannot exceed --files (${opt.files})`);
if (opt.dirs > opt.files) cli.fail(`--dirs (${opt.dirs}) cannot exceed --files (${opt.files})`);
if (process.getuid?.() !== 0) cli.fail('runs as root (the server mounts with mount(2))');
if (!fs.existsSync(CLI)) cli.fail(`${CLI} is missing: run scripts/setup first (scripts/stress-fds does)`);
if (!fs.existsSync('/dev/fuse')) cli.fail('/dev/fuse is missing');

// ------------------------------------------------------------------ state and cleanup

const t0 = Date.now();
const work = fs.realpathSync(fs.mkdtempSync(join(v.dir ?? os.tmpdir(), 'handlefs-stress-')));
const shared = join(work, 'shared');
const mnt = join(work, 'mnt');
const statsFile = join(work, 'stats.json');
const serverLogFile = join(work, 'server.log');
fs.mkdirSync(shared);
fs.mkdirSync(mnt);

interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}
/** the server's counters, as its --stats-file has them */
type Counters = Record<string, number>;

const failures: string[] = [];
const workers = new Set<ChildProcess>();
let server: ChildProcess | null = null;
let serverExit: ExitStatus | null = null;
let serverDiedEarly = false;
let stopping = false;
let serverLog = '';
const sample = { baseline: 0, max: 0, maxTree: 0, last: 0, phaseMax: {} as Record<string, { fds: number; treeFds: number }> };
/** the server's RSS and inode count (null until the mount is live, or when its pid is not node's) */
let memory: MemorySampler | null = null;
let currentPhase = 'start';

function say(msg: string): void {
  process.stderr.write(`stress-fds: ${msg}\n`);
}

async function waitServerExit(ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (server && !serverExit && Date.now() < end) await sleep(50);
  return !!serverExit || !server;
}

let cleanedUp = false;
/** the server's counters as it wrote them at exit (read before the work dir goes) */
let finalStats: Counters | null = null;
async function cleanup(): Promise<void> {
  if (cleanedUp) return;
  cleanedUp = true;
  stopping = true;
  for (const w of workers) if (w.pid) killPid(w.pid, 'SIGKILL');
  if (server && !serverExit) {
    const pid = server.pid!;
    memory?.sample(); // VmHWM, before the server goes
    killPid(pid, 'SIGTERM');
    if (!(await waitServerExit(10_000))) {
      await forceUnmount(mnt);
      if (!(await waitServerExit(5000))) {
        killPid(pid, 'SIGKILL');
        await waitServerExit(5000);
      }
    }
  }
  await forceUnmount(mnt);
  finalStats = readStats();
  try {
    fs.writeFileSync(serverLogFile, serverLog);
  } catch {
    /* work dir gone */
  }
  if (mountAt(mnt)) {
    say(`could not unmount ${mnt}; leaving ${work} in place`);
    failures.push(`could not unmount ${mnt}`);
  } else if (!opt.keep) {
    fs.rmSync(work, { recursive: true, force: true });
  } else {
    say(`kept ${work}`);
  }
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    say(`${sig}: stopping`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ------------------------------------------------------------------ server

/** The server, with the kernel's io_uring switch on for its start (INIT) under --io-uring on. */
async function startServer(): Promise<ChildProcess> {
  return opt.ioUring === 'on' ? withUringParam('Y', spawnServer) : spawnServer();
}

async function spawnServer(): Promise<ChildProcess> {
  const cmd: string[] = [];
  if (opt.nofile > 0) cmd.push('prlimit', `--nofile=${opt.nofile}:${opt.nofile}`, '--');
  if (!opt.cap) cmd.push('setpriv', '--inh-caps=-dac_read_search', '--bounding-set=-dac_read_search', '--');
  cmd.push(process.execPath, CLI, 'mount', shared, mnt, '--fd-budget', opt.budget, '--cache', opt.cache, '--log-level', 'warn', '--stats-file', statsFile);
  // always given: without it the server starts one per CPU where FUSE over io_uring is switched on
  cmd.push('--threads', String(opt.threads));
  cmd.push('--io-uring', opt.ioUring);
  // prlimit and setpriv exec the next command: the child's pid is the server's
  const s = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { ...process.env, ...READY_ENV } });
  server = s;
  const append = (d: Buffer): void => {
    serverLog += d.toString();
    if (serverLog.length > 1 << 20) serverLog = serverLog.slice(-(1 << 19));
  };
  s.stdout!.on('data', append);
  s.stderr!.on('data', append);
  s.on('exit', (code, signal) => {
    serverExit = { code, signal };
    if (!stopping) {
      serverDiedEarly = true;
      failures.push(`server died during ${currentPhase} (code ${code}, signal ${signal})`);
      for (const w of workers) if (w.pid) killPid(w.pid, 'SIGKILL');
    }
  });
  await waitReady(s, 30_000, () => serverLog);
  return s;
}

/** CapEff bit 2 (CAP_DAC_READ_SEARCH) and the fd limit of the server, from /proc */
function serverProc(pid: number): { capDacReadSearch: boolean | null; nofile: number | null } {
  const out: { capDacReadSearch: boolean | null; nofile: number | null } = { capDacReadSearch: null, nofile: null };
  try {
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const eff = /^CapEff:\s*([0-9a-f]+)/m.exec(st)?.[1];
    if (eff) out.capDacReadSearch = (BigInt('0x' + eff) & 4n) !== 0n;
    const lim = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(lim);
    if (m) out.nofile = m[1] === 'unlimited' ? null : Number(m[1]);
  } catch {
    /* gone */
  }
  return out;
}

/** count the server's fds, and those on the shared tree (readlink under the shared dir) */
function sampleFds(): void {
  if (!server || serverExit) return;
  let names;
  try {
    names = fs.readdirSync(`/proc/${server.pid}/fd`);
  } catch {
    return;
  }
  let tree = 0;
  for (const n of names) {
    try {
      const l = fs.readlinkSync(`/proc/${server.pid}/fd/${n}`);
      if (l === shared || l.startsWith(shared + '/')) tree++;
    } catch {
      /* closed meanwhile */
    }
  }
  sample.last = names.length;
  sample.max = Math.max(sample.max, names.length);
  sample.maxTree = Math.max(sample.maxTree, tree);
  const p = (sample.phaseMax[currentPhase] ??= { fds: 0, treeFds: 0 });
  p.fds = Math.max(p.fds, names.length);
  p.treeFds = Math.max(p.treeFds, tree);
}

function readStats(): Counters | null {
  try {
    return JSON.parse(fs.readFileSync(statsFile, 'utf8')) as Counters;
  } catch {
    return null;
  }
}

/** the server's inode count as its stats file has it now */
function statsInodes(): number | null {
  const n = readStats()?.inodes;
  return typeof n === 'number' ? n : null;
}

/** prlimit and setpriv exec the server: the pid spawned must be node's by now */
function isNode(pid: number): boolean {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`) === fs.realpathSync(process.execPath);
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ clients

/**
 * Run one client per job; resolves to their results (null for a client that printed none).
 * Progress lines are summed for the progress display; a client that overruns its deadline by
 * 10 s is killed by pid.
 */
function runClients<P extends Phase>(phase: P, jobs: PhaseWork[P][], timeoutMs: number, total: number, hooks: { onAllOpened?: () => void } = {}): Promise<(ClientResult | null)[]> {
  const done: number[] = new Array(jobs.length).fill(0);
  const results: (ClientResult | null)[] = new Array(jobs.length).fill(null);
  const start = Date.now();
  let opened = 0;
  const ticker = setInterval(() => {
    const n = done.reduce((a, b) => a + b, 0);
    const s = (Date.now() - start) / 1000;
    say(`${phase}: ${n}${total ? `/${total}` : ''} ops, ${Math.round(n / Math.max(s, 0.001))} ops/s, server fds ${sample.last} (max ${sample.max}, tree max ${sample.maxTree})`);
  }, 2000);
  return new Promise((resolveAll) => {
    let left = jobs.length;
    if (left === 0) {
      clearInterval(ticker);
      resolveAll(results);
      return;
    }
    jobs.forEach((share, w) => {
      const jobFile = join(work, `job-${phase}-${w}.json`);
      const job = { ...share, phase, mnt, timeoutMs, seed: opt.seed * 1000 + w + 1 } as Job;
      fs.writeFileSync(jobFile, JSON.stringify(job));
      const c = spawn(process.execPath, [CLIENT, jobFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      workers.add(c);
      const killer = setTimeout(() => {
        failures.push(`${phase}: client ${w} overran its deadline; killed`);
        if (c.pid) killPid(c.pid, 'SIGKILL');
      }, timeoutMs + 10_000);
      c.on('exit', () => workers.delete(c));
      void collect<ClientResult>(c, {
        onProgress: (n) => (done[w] = n),
        onOpened: () => {
          if (++opened === jobs.length) hooks.onAllOpened?.();
        },
      }).then(({ result, code, signal, stderr }) => {
        clearTimeout(killer);
        results[w] = result;
        if (!result) {
          failures.push(`${phase}: client ${w} ended without a result (code ${code}, signal ${signal}) ${stderr.slice(0, 500)}`);
          // a client that died before OPENED must not hold the mutator back
          if (phase === 'hold' && ++opened === jobs.length) hooks.onAllOpened?.();
        }
        if (--left === 0) {
          clearInterval(ticker);
          resolveAll(results);
        }
      });
    });
  });
}

function remaining(): number {
  return Math.max(10_000, opt.timeoutSec * 1000 - (Date.now() - t0));
}

// ------------------------------------------------------------------ the run

const N = opt.files;
const D = opt.dirs;
const W = opt.workers;
const dirOf = (i: number): number => i % D;
/** current name of each directory (the host renames some in the hold phase) */
const dirNames = Array.from({ length: D }, (_, j) => dirName(j));
const relOf = (i: number): string => `${dirNames[dirOf(i)]}/${fileName(i)}`;
/** file -> its host replacement version */
const replaced = new Map<number, number>();
const renamedDirs = new Set<number>();
interface PhaseRecord {
  ops: number;
  seconds: number;
  opsPerSec: number;
  [extra: string]: number;
}
const phases: Record<string, PhaseRecord> = {};
const clientErrors = { unexpected: [] as (ClientError & { phase: string })[], unexpectedCount: 0, expectedEstale: 0, byCode: {} as Record<string, number> };
const corruption = { count: 0, samples: [] as (Partial<Corrupt> & { phase: string; i: number; why: string })[] };

function recordPhase(name: string, ops: number, ms: number, extra: Record<string, number> = {}): void {
  const opsPerSec = Math.round(ops / Math.max(ms / 1000, 0.001));
  phases[name] = { ops, seconds: +(ms / 1000).toFixed(2), opsPerSec, ...extra };
  say(`${name}: ${ops} ops in ${(ms / 1000).toFixed(1)} s = ${opsPerSec} ops/s`);
}

function absorb(phase: string, results: (ClientResult | null)[], expectEstale?: (i: number) => boolean): number {
  let ops = 0;
  for (const r of results) {
    if (!r) continue;
    ops += r.ops;
    if (r.timedOut) failures.push(`${phase}: a client ran out of time`);
    corruption.count += r.corruptCount;
    for (const c of r.corrupt) if (corruption.samples.length < 50) corruption.samples.push({ phase, ...c });
    for (const e of r.errors) {
      clientErrors.byCode[e.code] = (clientErrors.byCode[e.code] ?? 0) + 1;
      if (e.code === 'ESTALE' && expectEstale?.(e.i)) {
        clientErrors.expectedEstale++;
      } else {
        clientErrors.unexpectedCount++;
        if (clientErrors.unexpected.length < 50) clientErrors.unexpected.push({ phase, ...e });
      }
    }
  }
  return ops;
}

function partition<T>(list: T[]): T[][] {
  const parts = Array.from({ length: W }, (): T[] => []);
  list.forEach((x, k) => parts[k % W]!.push(x));
  return parts;
}

type HostStep = { kind: 'rename'; j: number; to: string } | { kind: 'replace'; i: number };

async function main(): Promise<void> {
  say(`work dir ${work}; ${N} files in ${D} dirs, ${opt.open} held open by ${W} clients, budget ${opt.budget}, RLIMIT_NOFILE ${opt.nofile || 'unchanged'}, ${opt.cap ? 'with' : 'without'} CAP_DAC_READ_SEARCH`);

  // --- build (on the host)
  currentPhase = 'build';
  let t = Date.now();
  for (let j = 0; j < D; j++) fs.mkdirSync(join(shared, dirNames[j]!));
  for (let i = 0; i < N; i++) {
    fs.writeFileSync(join(shared, relOf(i)), content(i, 0));
    if (i % 20_000 === 19_999) say(`build: ${i + 1}/${N} files`);
  }
  recordPhase('build', N + D, Date.now() - t);

  // --- server
  currentPhase = 'mount';
  const srv = await startServer();
  const proc = serverProc(srv.pid!);
  sampleFds();
  sample.baseline = sample.last;
  say(`server pid ${srv.pid} ready: ${sample.baseline} fds, RLIMIT_NOFILE ${proc.nofile ?? 'unlimited'}, CAP_DAC_READ_SEARCH ${proc.capDacReadSearch ? 'held' : 'dropped'}`);
  if (proc.capDacReadSearch !== opt.cap) failures.push(`server capability state ${proc.capDacReadSearch}, wanted ${opt.cap}`);
  const sampler = setInterval(sampleFds, 50);
  if (isNode(srv.pid!)) {
    const m = new MemorySampler(srv.pid!, statsInodes);
    m.sample();
    memory = m;
  } else {
    say(`server pid ${srv.pid} is not a node process: no memory figures`);
  }
  const memSampler = setInterval(() => memory?.sample(), 250);

  try {
    // --- stat
    currentPhase = 'stat';
    const idx = Array.from({ length: N }, (_, i) => i);
    const dirCount: number[] = new Array(D).fill(0);
    for (let i = 0; i < N; i++) dirCount[dirOf(i)]!++;
    const statJobs = partition(idx).map((part, w): PhaseWork['stat'] => ({
      files: part.map((i) => [i, relOf(i), content(i, 0).length]),
      dirs: dirNames.map((n, j): [string, number] => [n, dirCount[j]!]).filter((_, j) => j % W === w),
    }));
    t = Date.now();
    let res = await runClients('stat', statJobs, remaining(), N + D);
    recordPhase('stat', absorb('stat', res), Date.now() - t);
    if (serverDiedEarly) return;

    // --- read
    currentPhase = 'read';
    const readJobs = partition(idx).map((part): PhaseWork['read'] => ({ files: part.map((i) => [i, relOf(i), 0]) }));
    t = Date.now();
    res = await runClients('read', readJobs, remaining(), N);
    recordPhase('read', absorb('read', res), Date.now() - t);
    if (serverDiedEarly) return;

    // --- hold, with the host renaming and replacing behind the server's back
    currentPhase = 'hold';
    const K = opt.open;
    // spread over every directory (so that renamed directories hold open files), evenly in each
    const heldSet = new Set<number>();
    const perDir = Math.ceil(K / D);
    for (let k = 0; k < K; k++) {
      const j = k % D;
      const inDir = Math.ceil((N - j) / D);
      heldSet.add(j + D * Math.floor((Math.floor(k / D) * inDir) / perDir));
    }
    for (let i = 0; heldSet.size < K; i++) heldSet.add(i);
    const heldIdx = [...heldSet];
    const nRename = Math.max(1, Math.round(D / 10));
    const renameList = Array.from({ length: nRename }, (_, k) => Math.floor((k * D) / nRename + D / (2 * nRename)) % D);
    const renameSet = new Set(renameList);
    const replHeld = heldIdx.filter((i, k) => k % 25 === 12 && !renameSet.has(dirOf(i)));
    const replOther: number[] = [];
    for (let i = 7; i < N && replOther.length < replHeld.length; i += 97) if (!heldSet.has(i) && !renameSet.has(dirOf(i))) replOther.push(i);
    const replHeldSet = new Set(replHeld);
    const holdEntries = heldIdx.map((i): [number, string, 'rw' | 'ro'] => [i, relOf(i), replHeldSet.has(i) ? 'ro' : 'rw']);
    const holdJobs = partition(holdEntries).map((files): PhaseWork['hold'] => ({ files, holdMs: opt.holdSeconds * 1000 }));
    // the host's changes, spread over the first 60% of the hold time once every file is open
    const steps: HostStep[] = [];
    for (const j of renameList) steps.push({ kind: 'rename', j, to: `${dirName(j)}.r1` });
    renameList.forEach((j, k) => {
      if (k % 2 === 0) steps.push({ kind: 'rename', j, to: `${dirName(j)}.r2` });
    });
    const repl = [...replHeld, ...replOther];
    // interleave renames with replacements
    const mixed: HostStep[] = [];
    const stride = Math.max(1, Math.floor(repl.length / Math.max(1, steps.length)));
    let r = 0;
    for (const s of steps) {
      mixed.push(s);
      for (let k = 0; k < stride && r < repl.length; k++) mixed.push({ kind: 'replace', i: repl[r++]! });
    }
    while (r < repl.length) mixed.push({ kind: 'replace', i: repl[r++]! });
    let mutator: Promise<void> | null = null;
    const hostOps = { renames: 0, replaces: 0, errors: [] as string[] };
    const mutate = async (): Promise<void> => {
      const spread = opt.holdSeconds * 600;
      const gap = mixed.length ? spread / mixed.length : 0;
      for (const s of mixed) {
        if (stopping || serverDiedEarly) break;
        try {
          if (s.kind === 'rename') {
            fs.renameSync(join(shared, dirNames[s.j]!), join(shared, s.to));
            dirNames[s.j] = s.to;
            renamedDirs.add(s.j);
            hostOps.renames++;
          } else {
            const v = (replaced.get(s.i) ?? 0) + 1;
            const tmp = join(shared, dirNames[dirOf(s.i)]!, `.tmp-${fileName(s.i)}`);
            fs.writeFileSync(tmp, content(s.i, v));
            fs.renameSync(tmp, join(shared, relOf(s.i)));
            replaced.set(s.i, v);
            hostOps.replaces++;
          }
        } catch (e) {
          hostOps.errors.push(`${s.kind}: ${(e as Error).message}`);
        }
        if (gap >= 1) await sleep(gap);
      }
    };
    t = Date.now();
    res = await runClients('hold', holdJobs, remaining(), 0, { onAllOpened: () => (mutator = mutate()) });
    await mutator;
    for (const e of hostOps.errors) failures.push(`host-side change failed: ${e}`);
    const expectEstale = (i: number): boolean => replaced.has(i) || (!opt.cap && renamedDirs.has(dirOf(i)));
    const holdOps = absorb('hold', res, expectEstale);
    const sum = (k: 'held' | 'reads' | 'writes'): number => res.reduce((a, x) => a + (x?.[k] ?? 0), 0);
    recordPhase('hold', holdOps, Date.now() - t, { held: sum('held'), reads: sum('reads'), writes: sum('writes'), hostRenames: hostOps.renames, hostReplaces: hostOps.replaces });
    if (sum('held') !== K) failures.push(`hold: ${sum('held')} of ${K} files were open at once`);
    if (serverDiedEarly) return;

    // --- the model of every file, checked against the host, then the mount against the host
    currentPhase = 'verify';
    const patches = new Map<number, [number, Buffer][]>();
    for (const x of res) for (const [i, off, b64] of x?.patches ?? []) {
      let l = patches.get(i);
      if (!l) patches.set(i, (l = []));
      l.push([off, Buffer.from(b64, 'base64')]);
    }
    const vfiles: PhaseWork['verify']['files'] = [];
    for (let i = 0; i < N; i++) {
      let want;
      const version = replaced.get(i);
      if (version !== undefined) want = content(i, version);
      else {
        want = content(i, 0);
        for (const [off, data] of patches.get(i) ?? []) data.copy(want, off);
      }
      let host;
      try {
        host = fs.readFileSync(join(shared, relOf(i)));
      } catch (e) {
        corruption.count++;
        if (corruption.samples.length < 50) corruption.samples.push({ phase: 'host', i, why: `host file unreadable: ${(e as NodeJS.ErrnoException).code}` });
        continue;
      }
      if (!host.equals(want)) {
        corruption.count++;
        if (corruption.samples.length < 50) corruption.samples.push({ phase: 'host', i, why: `host bytes differ from the model (${patches.get(i)?.length ?? 0} acknowledged writes)` });
      }
      vfiles.push([i, relOf(i), createHash('sha256').update(host).digest('hex'), host.length]);
    }
    await sleep(1100); // past the kernel's entry/attr timeouts of the old names
    const verifyJobs = partition(vfiles).map((files): PhaseWork['verify'] => ({ files }));
    t = Date.now();
    res = await runClients('verify', verifyJobs, remaining(), vfiles.length);
    recordPhase('verify', absorb('verify', res), Date.now() - t);
  } finally {
    clearInterval(sampler);
    clearInterval(memSampler);
  }
}

interface Summary {
  ok: boolean;
  config: { files: number; dirs: number; open: number; budget: string; nofile: number | null; cap: boolean; workers: number; holdSeconds: number; cache: string; threads: number; ioUring: string; seed: number };
  phases: Record<string, PhaseRecord>;
  server: { pid: number | null; baselineFds: number; maxFds: number; maxTreeFds: number; fdLimitForTree: number | null; perPhase: typeof sample.phaseMax; exit: ExitStatus | null };
  counters: Counters | null;
  memory: MemoryReport | null;
  clients: { expectedEstale: number; unexpectedErrors: number; byCode: Record<string, number>; samples: typeof clientErrors.unexpected };
  corruption: typeof corruption;
  failures: string[];
  seconds: number;
}

const watchdog = setTimeout(() => {
  failures.push(`overall timeout (${opt.timeoutSec} s)`);
  say(`overall timeout (${opt.timeoutSec} s): stopping`);
  void cleanup().finally(() => finish());
}, opt.timeoutSec * 1000);

let finished = false;
function finish(): void {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  const stats = finalStats ?? readStats();
  const budgetN = opt.budget === 'auto' ? stats?.fdBudget ?? null : Number(opt.budget);
  if (budgetN !== null && sample.maxTree > budgetN + RESERVE) failures.push(`the server held ${sample.maxTree} fds on the shared tree, above budget ${budgetN} + reserve ${RESERVE}`);
  if (corruption.count) failures.push(`${corruption.count} corrupted reads/files`);
  if (clientErrors.unexpectedCount) failures.push(`${clientErrors.unexpectedCount} unexpected client errors`);
  if (serverExit && !serverDiedEarly && (serverExit.code !== 0 || serverExit.signal)) failures.push(`server exited with code ${serverExit.code}, signal ${serverExit.signal} on SIGTERM`);
  if (stats?.sealFailures) failures.push(`${stats.sealFailures} seal failures in the server`);
  const summary: Summary = {
    ok: failures.length === 0,
    config: { files: N, dirs: D, open: opt.open, budget: opt.budget, nofile: opt.nofile || null, cap: opt.cap, workers: W, holdSeconds: opt.holdSeconds, cache: opt.cache, threads: opt.threads, ioUring: opt.ioUring, seed: opt.seed },
    phases,
    server: {
      pid: server?.pid ?? null,
      baselineFds: sample.baseline,
      maxFds: sample.max,
      maxTreeFds: sample.maxTree,
      fdLimitForTree: budgetN === null ? null : budgetN + RESERVE,
      perPhase: sample.phaseMax,
      exit: serverExit,
    },
    counters: stats,
    // without an inode counter in the stats file: the distinct files and directories the clients
    // looked up (a host replacement is a new inode, looked up again by the verify phase)
    memory: memory?.report({ inodes: N + D + replaced.size, source: 'files + dirs the clients looked up (the stats file has no inodes counter)' }, 'the server\'s stats file (inodes)') ?? null,
    clients: { expectedEstale: clientErrors.expectedEstale, unexpectedErrors: clientErrors.unexpectedCount, byCode: clientErrors.byCode, samples: clientErrors.unexpected },
    corruption,
    failures,
    seconds: +((Date.now() - t0) / 1000).toFixed(1),
  };
  if (opt.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else printSummary(summary);
  const code = summary.ok ? 0 : 1;
  process.exitCode = code;
  setTimeout(() => process.exit(code), 100).unref();
}

function printSummary(s: Summary): void {
  const out: string[] = [];
  out.push(`handlefs stress: ${s.config.files} files / ${s.config.dirs} dirs, ${s.config.open} held open, budget ${s.config.budget}, RLIMIT_NOFILE ${s.config.nofile ?? '-'}, ${s.config.cap ? 'with' : 'without'} CAP_DAC_READ_SEARCH, cache ${s.config.cache}`);
  out.push('phase      ops        s     ops/s');
  for (const [k, p] of Object.entries(s.phases)) out.push(`${k.padEnd(8)} ${String(p.ops).padStart(7)} ${String(p.seconds).padStart(8)} ${String(p.opsPerSec).padStart(9)}`);
  const h = s.phases.hold;
  if (h) out.push(`hold: ${h.held} files open at once, ${h.reads} reads, ${h.writes} writes; host renamed ${h.hostRenames} dirs, replaced ${h.hostReplaces} files`);
  out.push(`server fds: baseline ${s.server.baselineFds}, max ${s.server.maxFds}, max on the shared tree ${s.server.maxTreeFds} (limit ${s.server.fdLimitForTree ?? '-'})`);
  const m = s.memory;
  const mb = (b: number): string => (b / 1e6).toFixed(1);
  out.push(m ? `server RSS: start ${mb(m.rssStartBytes)} MB, peak ${mb(m.rssPeakBytes)} MB${m.rssPeakSampleBytes < m.rssPeakBytes ? ` (VmHWM; highest sample ${mb(m.rssPeakSampleBytes)} MB)` : ''}, inodes known ${m.inodesKnown ?? '-'} (from ${m.inodesSource}; most ${m.inodesMax ?? '-'}), (peak-start)/inodes = ${m.bytesPerInode ?? '-'} bytes per inode (peak/inodes = ${m.bytesPerInodeOfPeak ?? '-'})` : 'server RSS: unavailable');
  const c = s.counters;
  out.push(c ? `server counters: hits ${c.hits}, misses ${c.misses}, evictions ${c.evictions}, reopens by path ${c.reopenByPath}, by handle ${c.reopenByHandle}, ESTALE ${c.estale}, EMFILE ${c.emfile}, seal failures ${c.sealFailures}` : 'server counters: unavailable (no stats file)');
  out.push(`clients: expected ESTALE ${s.clients.expectedEstale}, unexpected errors ${s.clients.unexpectedErrors} ${JSON.stringify(s.clients.byCode)}; corruption ${s.corruption.count}`);
  for (const e of s.clients.samples.slice(0, 10)) out.push(`  error: ${JSON.stringify(e)}`);
  for (const e of s.corruption.samples.slice(0, 10)) out.push(`  corrupt: ${JSON.stringify(e)}`);
  for (const f of s.failures) out.push(`FAIL: ${f}`);
  out.push(s.ok ? `OK (${s.seconds} s)` : `FAILED (${s.seconds} s)`);
  process.stdout.write(out.join('\n') + '\n');
}

try {
  await main();
} catch (e) {
  failures.push(`error: ${(e as Error)?.stack ?? e}`);
} finally {
  currentPhase = 'stop';
  stopping = true;
  await cleanup();
  if (serverDiedEarly || failures.length) {
    const tail = serverLog.split('\n').slice(-20).join('\n');
    if (tail.trim()) say(`server log (tail):\n${tail}`);
  }
  finish();
}
