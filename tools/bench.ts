// Workload runner of scripts/bench (which installs the tools and builds passthrough_ll first).
// Runs the same workloads, in one run, on the native directory and on every FUSE server in
// TARGETS, then writes bench/results.json and bench/results.md (scripts/bench-chart.py draws the
// chart). Every server is started and stopped here, killed only by its own pid, always unmounted.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, execFileSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseCli } from './lib/args.js';
import { forceUnmount, mountAt } from './lib/mounts.js';
import { CLI, REPO } from './lib/repo.js';
import { setUringParam, uringParam, uringUnavailable } from './lib/uring.js';

const USAGE = `usage: scripts/bench [options]          (as root; node dist-tools/bench.js --pll PATH [options])
       node dist-tools/bench.js summarize-profile FILE.cpuprofile|DIR

Run the same workloads on the native directory and on every FUSE server (bindfs, passthrough_ll,
handlefs) one after another; write bench/results.json and bench/results.md.

options:
  --quick            smaller sizes, a smoke run of about 2 minutes
  --work DIR         data and mountpoints (default /var/tmp/handlefs-bench; a local file system)
  --out DIR          where results.json and results.md go (default bench/)
  --targets a,b      only these targets, by id (native, bindfs, passthrough_ll, handlefs-raw, ...);
                     a partial run: results go to WORK.partial-results.json, bench/ is left alone
  --workloads w1,w2  only these workloads, by id (create_stat_unlink, tar_x, ...); a partial run
  --no-sweep         skip the fd-budget sweep
  --profile DIR      run handlefs under node --cpu-prof into DIR (a partial run), then summarize;
                     pair with --targets handlefs-raw --workloads X --no-sweep
  --pll PATH         the compiled passthrough_ll (scripts/bench builds it and passes it)
  --print-work       print the work directory these options name and exit (for scripts/bench)
  -h, --help         this text

summarize-profile: the top self time of a CPU profile (or of every *.cpuprofile in DIR), by
function and by file, also written beside each profile as .summary.txt.`;

// ---------------------------------------------------------------- options
const cli = parseCli({
  prog: 'bench',
  usage: USAGE,
  options: {
    pll: { type: 'string' }, quick: { type: 'boolean' }, work: { type: 'string' }, out: { type: 'string' },
    profile: { type: 'string' }, targets: { type: 'string' }, workloads: { type: 'string' },
    'no-sweep': { type: 'boolean' }, 'print-work': { type: 'boolean' },
  },
  maxPositionals: 2,
});
const opts = cli.values;
if (cli.positionals[0] === 'summarize-profile') {
  if (cli.positionals.length !== 2) cli.fail('summarize-profile needs one FILE.cpuprofile or DIR');
  summarizeProfiles(cli.positionals[1]!);
  process.exit(0);
}
if (cli.positionals.length) cli.fail(`unexpected argument '${cli.positionals[0]}'`);
const QUICK = !!opts.quick;
const WORK = path.resolve(opts.work ?? '/var/tmp/handlefs-bench');
const OUT = path.resolve(opts.out ?? path.join(REPO, 'bench'));
const PROFILE = opts.profile ? path.resolve(opts.profile) : null;
const ONLY_TARGETS = opts.targets?.split(',');
const ONLY_WORKLOADS = opts.workloads?.split(',');
const SWEEP = !opts['no-sweep'];

const SIZES = QUICK
  ? { csuFiles: 2000, treeFiles: 2000, seqMiB: 256, randMiB: 16, sweepFiles: 10000, gitRuns: 2 }
  : { csuFiles: 20000, treeFiles: 12000, seqMiB: 1024, randMiB: 192, sweepFiles: 100000, gitRuns: 3 };
const SWEEP_BUDGETS = ['16', '64', '256', '4096', 'auto'] as const;
const CMD_TIMEOUT_MS = 150_000;   // one workload never runs longer than this
const FIO_RUNTIME_S = 30;         // fio stops at this even if the size is not reached

// ---------------------------------------------------------------- targets
/** [argv0, argv] of a server that serves `shared` on `mnt` in the foreground */
type Start = (shared: string, mnt: string) => [string, string[]];
interface Target {
  id: string;
  label: string;
  /** the cache settings used */
  cache: string;
  /** the native directory itself: nothing to mount */
  native?: boolean;
  /** how to see the mount is live: 'fd' (HANDLEFS_READY_FD) or 'mountinfo' (poll until it appears) */
  ready?: 'fd' | 'mountinfo';
  start?: Start;
  /** the fd-budget sweep runs on it */
  sweep?: boolean;
  /** why this target cannot run on this machine, or null */
  unavailable?: () => string | null;
  /** a server with several serving threads: each workload records how the requests spread over them (its --stats-file) */
  threadStats?: boolean;
  /** FUSE over io_uring: the kernel's switch is turned on for its start (INIT) and put back */
  ring?: boolean;
}

/** enable_uring as found at start, put back after each ring target's start and on every exit */
const uringBefore = uringParam();
process.on('exit', () => setUringParam(uringBefore));

/** A raw unsupervised server is given its thread count (one unless the target says): without
 * --threads it would start one per CPU where the kernel's io_uring switch is left on. */
const handlefs = (frontend: string, extra: string[] = []): Start => (shared, mnt) => [
  process.execPath,
  [...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : []), CLI, 'mount', shared, mnt,
    '--frontend', frontend, '--cache', 'auto', '--log-level', 'warn',
    ...(frontend === 'raw' && !extra.includes('--threads') && !extra.includes('--supervise') ? ['--threads', '1'] : []), ...extra],
];
/** the fuse-native frontend needs the fuse-native module and its libfuse.so.2: load it, in a child */
function fuseNativeUnavailable(): string | null {
  const r = spawnSync(process.execPath, ['-e', "require('fuse-native')"], { cwd: REPO, encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0) return null;
  const why = (r.stderr ?? '').split('\n').find((l) => /Error/.test(l)) ?? r.error?.message ?? `exit ${r.status ?? r.signal}`;
  return `the fuse-native module does not load: ${why.trim()}`;
}
const PLL = (): string => opts.pll!;
/** where a threaded target's server writes its counters (beside its mountpoint) */
const threadStatsFile = (mnt: string): string => `${mnt}.stats.json`;
interface ThreadRow { requests: number; served: number; handedOver: number; handedOverByOp?: Record<string, number> }
/** The per-thread counters a threaded server last wrote (every second), or null. */
function threadRows(mnt: string): ThreadRow[] | null {
  try {
    return (JSON.parse(fs.readFileSync(threadStatsFile(mnt), 'utf8')) as { perThread?: ThreadRow[] }).perThread ?? null;
  } catch {
    return null;
  }
}
const TARGETS: Target[] = [
  { id: 'native', label: 'native (ext4)', native: true, cache: 'kernel page/dentry cache (the limit)' },
  { id: 'bindfs', label: 'bindfs', ready: 'mountinfo',
    cache: 'libfuse2 high level: -o attr_timeout=1,entry_timeout=1,negative_timeout=0 (no kernel_cache/auto_cache: page cache dropped on open), -o big_writes (128 KiB writes); single-threaded (bindfs default)',
    start: (s, m) => ['bindfs', ['-f', '--no-allow-other', '-o', 'attr_timeout=1,entry_timeout=1,negative_timeout=0,big_writes', s, m]] },
  { id: 'passthrough_ll', label: 'passthrough_ll', ready: 'mountinfo',
    cache: 'libfuse 3.14 example: -o cache=auto,timeout=1 (attr/entry 1 s, no keep_cache: page cache dropped on open), multi-threaded (default), 1 MiB requests',
    start: (s, m) => [PLL(), ['-f', '-o', `source=${s},cache=auto,timeout=1`, m]] },
  // a reference, not a peer of its own: the same server with one serving thread, as handlefs has
  // (it shows what a thread pool buys on this machine; see the README)
  { id: 'passthrough_ll-1t', label: 'passthrough_ll -s (one thread)', ready: 'mountinfo',
    cache: 'as passthrough_ll, single-threaded (-s): one thread serves every request, as in handlefs',
    start: (s, m) => [PLL(), ['-f', '-s', '-o', `source=${s},cache=auto,timeout=1`, m]] },
  { id: 'handlefs-raw', label: 'handlefs raw', ready: 'fd', sweep: true,
    cache: '--cache auto (attr/entry 1 s, no keep_cache: page cache dropped on open), one serving thread (the event loop), 1 MiB requests; xattrs on (passthrough_ll serves none: one GETXATTR less per new file)',
    start: handlefs('raw') },
  { id: 'handlefs-supervised', label: 'handlefs raw --supervise', ready: 'fd',
    cache: 'as handlefs raw, with --supervise: a supervisor process keeps /dev/fuse and a worker child process serves the requests (server CPU: both processes)',
    start: handlefs('raw', ['--supervise']) },
  { id: 'handlefs-passthrough', label: 'handlefs raw --passthrough', ready: 'fd',
    cache: 'as handlefs raw, plus FUSE passthrough: open files are kernel backing files (reads/writes bypass the server)',
    start: handlefs('raw', ['--passthrough']) },
  { id: 'handlefs-threads', label: 'handlefs raw --threads auto', ready: 'fd', threadStats: true,
    cache: 'as handlefs raw, with a serving thread per CPU (--threads auto): the others read clones of the connection, each bound to its CPU, serve what needs a cached fd or the shared inode table (open files\' reads, writes, fsync and flush; getattr, lookups of absent names and of known inodes, chmod/chown/utimes, unlink while no file is open, ...), and hand every other request to the thread that runs the filesystem',
    start: (s, m) => handlefs('raw', ['--threads', 'auto', '--stats-file', threadStatsFile(m)])(s, m) },
  { id: 'handlefs-uring', label: 'handlefs raw --io-uring on', ready: 'fd', ring: true, unavailable: uringUnavailable,
    cache: 'as handlefs raw (one serving thread), over FUSE over io_uring: every CPU\'s queue is that thread\'s ring; one io_uring_enter answers a request and fetches the next',
    start: (s, m) => handlefs('raw', ['--io-uring', 'on', '--stats-file', threadStatsFile(m)])(s, m) },
  { id: 'handlefs-threads-uring', label: 'handlefs raw --threads auto --io-uring on', ready: 'fd', ring: true, threadStats: true, unavailable: uringUnavailable,
    cache: 'as handlefs --threads auto, over FUSE over io_uring: each CPU\'s queue is served by the thread bound to that CPU (the owner takes the rest), so a request is read on its caller\'s CPU; what a thread hands over the owner answers through its own ring (the entry then follows it), and the owner hands READ/WRITE of another thread\'s queue to that thread',
    start: (s, m) => handlefs('raw', ['--threads', 'auto', '--io-uring', 'on', '--stats-file', threadStatsFile(m)])(s, m) },
  { id: 'handlefs-fuse-native', label: 'handlefs fuse-native', ready: 'fd', unavailable: fuseNativeUnavailable,
    cache: '--cache auto via the libfuse2 high-level API (attr_timeout=entry_timeout=1)', start: handlefs('fuse-native') },
];

// ---------------------------------------------------------------- workloads
interface Measured {
  value: number;
  unit: 's' | 'IOPS' | 'MiB/s';
  better: 'lower' | 'higher';
  /** the server's CPU time in the workload (a workload that times part of its work sets it itself) */
  server_cpu_s?: number;
  detail?: Record<string, unknown>;
}
type Outcome = Measured | { error: string };
interface Ctx {
  target: Target;
  /** inside the mount, or the native dir */
  dir: string;
  /** a fresh server (and kernel state) for the same directory */
  remount: () => Promise<void>;
  /** the server's CPU seconds so far (null for native) */
  cpu: () => number | null;
}
interface Workload {
  id: string;
  label: string;
  /** `metadata`/`seqio` tag the target checks */
  group: 'metadata' | 'seqio' | 'randio';
  run: (c: Ctx) => Measured | Promise<Measured>;
}
const WORKLOADS: Workload[] = [
  { id: 'create_stat_unlink', label: `create+stat+unlink ${SIZES.csuFiles} files`, group: 'metadata', run: createStatUnlink },
  { id: 'tar_x', label: `tar -x ${SIZES.treeFiles} small files`, group: 'metadata', run: tarX },
  { id: 'find_stat_cold', label: 'find + stat, cold caches', group: 'metadata', run: findStatCold },
  { id: 'du_s', label: 'du -s (right after find)', group: 'metadata', run: duS },
  { id: 'git_status', label: `git status (${SIZES.treeFiles} files, warm, median of ${SIZES.gitRuns})`, group: 'metadata', run: gitStatus },
  { id: 'seq_write', label: `sequential write ${SIZES.seqMiB} MiB (fio bs=1M)`, group: 'seqio', run: (c) => fio(c, 'write') },
  { id: 'seq_read', label: `sequential read ${SIZES.seqMiB} MiB (fio bs=1M)`, group: 'seqio', run: (c) => fio(c, 'read') },
  { id: 'rand_read_4k', label: `random 4 KiB reads, ${SIZES.randMiB} MiB of the file (fio)`, group: 'randio', run: (c) => fio(c, 'randread') },
  // several clients at once: what more serving threads are for (issue 15 asks 1.5x of today's)
  { id: 'rand_read_4k_4jobs', label: `random 4 KiB reads, 4 jobs, ${SIZES.randMiB} MiB each (fio)`, group: 'randio', run: (c) => fio(c, 'randread4') },
];

for (const [what, only, all] of [['--targets', ONLY_TARGETS, TARGETS], ['--workloads', ONLY_WORKLOADS, WORKLOADS]] as const) {
  const unknown = only?.filter((id) => !all.some((x) => x.id === id));
  if (unknown?.length) cli.fail(`${what}: no such id ${unknown.join(', ')} (ids: ${all.map((x) => x.id).join(', ')})`);
}
if (opts['print-work']) {
  process.stdout.write(`${WORK}\n`);
  process.exit(0);
}
if (!opts.pll) cli.fail('--pll PATH (the compiled passthrough_ll) is required');

// ---------------------------------------------------------------- helpers
const T0 = Date.now();
const say = (s: string): void => void process.stderr.write(`[bench ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)}s] ${s}\n`);
const now = (): number => Number(process.hrtime.bigint()) / 1e9;
function sh(cmd: string, argv: string[], o: { capture?: boolean; cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', o.capture ? 'pipe' : 'ignore', 'pipe'], encoding: 'utf8',
    timeout: CMD_TIMEOUT_MS, maxBuffer: 64 << 20, cwd: o.cwd, env: o.env ?? process.env });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: exit ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().slice(0, 500)}`);
  return r.stdout;
}
function timed(cmd: string, argv: string[]): number {
  const t = now();
  sh(cmd, argv);
  return now() - t;
}
/**
 * This machine's balloon reports free guest memory to the host (virtio_balloon free page reporting,
 * page_reporting's reported_kib counts it), and the host discards what was reported: the first
 * write to such a page is a fault in the host. A sequential read fills a fresh page cache of the
 * file's size; read through handlefs (one thread) right after a 5 s rest it ran at 585-1,510 MiB/s,
 * right after a process touched and freed 1.5 GiB at 1,914-2,156 (3 rounds each, one mount): the
 * same server, its kernel copy (`memcpy`) up to 3.7 times slower into discarded pages. So before each fio
 * run a throw-away process touches and frees 1.5 times the run's data, and the run fills pages the
 * host backs, as on a machine without the balloon, the same for every target.
 */
const REPORTED_KIB = '/sys/module/page_reporting/parameters/reported_kib';
function backMemory(mib: number): void {
  spawnSync('dd', ['if=/dev/zero', 'of=/dev/null', `bs=${Math.ceil(mib)}M`, 'count=1', 'status=none'], { timeout: CMD_TIMEOUT_MS });
}
/** KiB of free memory reported to the host so far, or null where the kernel does not report */
function reportedKib(): number | null {
  try {
    return Number(fs.readFileSync(REPORTED_KIB, 'utf8').trim());
  } catch {
    return null;
  }
}
function dropCaches(): void {
  spawnSync('sync');
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}
const isMounted = (mnt: string): boolean => mountAt(mnt) !== null;
// Deterministic PRNG so every run generates the same tree.
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

// ---------------------------------------------------------------- server lifecycle
const PIDFILE = path.join(WORK, 'pids');
interface Live {
  child: ChildProcess;
  exited: Promise<unknown>;
  mnt: string;
}
const live = new Map<number, Live>();

async function startServer(target: Target, shared: string, mnt: string, extra: string[] = []): Promise<ChildProcess> {
  try {
    return await spawnServer(target, shared, mnt, extra);
  } finally {
    if (target.ring) setUringParam(uringBefore);
  }
}

async function spawnServer(target: Target, shared: string, mnt: string, extra: string[]): Promise<ChildProcess> {
  const [cmd, argv] = target.start!(shared, mnt);
  const log = fs.openSync(path.join(WORK, 'logs', `${target.id}.log`), 'a');
  const env = { ...process.env };
  const stdio: StdioOptions = ['ignore', log, log];
  if (target.ready === 'fd') { env.HANDLEFS_READY_FD = '3'; stdio.push('pipe'); }
  // the kernel offers io_uring at INIT only while its switch is on; every other target runs with it as found
  if (target.ring) setUringParam('Y');
  const child = spawn(cmd, [...argv, ...extra], { stdio, env });
  fs.closeSync(log);
  const exited = new Promise((res) => child.once('exit', (code, sig) => res({ code, sig })));
  live.set(child.pid!, { child, exited, mnt });
  fs.appendFileSync(PIDFILE, `${child.pid} ${mnt}\n`);
  const deadline = Date.now() + 30_000;
  let ready = false;
  if (target.ready === 'fd') {
    let buf = '';
    (child.stdio[3] as Readable).on('data', (d: Buffer) => { buf += d; if (buf.includes('ready\n')) ready = true; });
  }
  let done = false;
  void exited.then(() => { done = true; });
  while (!ready) {
    if (done) throw new Error(`${target.id} exited before the mount was live (see ${WORK}/logs/${target.id}.log)`);
    if (Date.now() > deadline) { await stopServer(child); throw new Error(`${target.id}: mount not live after 30 s`); }
    if (target.ready === 'mountinfo' && isMounted(mnt)) ready = true;
    else await sleep(20);
  }
  return child;
}

async function stopServer(child: ChildProcess): Promise<void> {
  const ent = live.get(child.pid!);
  if (!ent) return;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const t = await Promise.race([ent.exited, sleep(15_000).then(() => 'timeout')]);
    if (t === 'timeout') {
      say(`  pid ${child.pid} still running 15 s after SIGTERM: SIGKILL`);
      child.kill('SIGKILL');
      await ent.exited;
    }
  }
  await forceUnmount(ent.mnt);
  live.delete(child.pid!);
}

async function stopAll(): Promise<void> {
  for (const { child } of [...live.values()]) await stopServer(child).catch(() => {});
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => { say(`${sig}: stopping servers`); void stopAll().finally(() => process.exit(130)); });
}

// ---------------------------------------------------------------- data sets (native, prepared once)
function prepareData(): void {
  fs.mkdirSync(path.join(WORK, 'logs'), { recursive: true });
  fs.writeFileSync(PIDFILE, '');
  const stampWant = JSON.stringify(SIZES);
  const stamp = path.join(WORK, 'data', 'stamp');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === stampWant) return;
  fs.rmSync(path.join(WORK, 'data'), { recursive: true, force: true });
  const data = path.join(WORK, 'data');
  fs.mkdirSync(data, { recursive: true });
  // The tree for tar/find/du/git: dirs of depth 2, sizes mostly small (a source-tree-like mix).
  say(`generating the tree (${SIZES.treeFiles} files) and its tarball, the git repository, the fd-sweep set (${SIZES.sweepFiles} files)`);
  const rnd = prng(7);
  const tree = path.join(data, 'gen', 'tree');
  const perDir = 30;
  const blob = Buffer.alloc(64 << 10);
  for (let i = 0; i < blob.length; i++) blob[i] = 32 + Math.floor(rnd() * 95);
  for (let i = 0; i < SIZES.treeFiles; i++) {
    const d = Math.floor(i / perDir);
    const dir = path.join(tree, `d${d % 20}`, `s${Math.floor(d / 20)}`);
    if (i % perDir === 0) fs.mkdirSync(dir, { recursive: true });
    const u = rnd();
    const size = u < 0.5 ? Math.floor(rnd() * 1024) : u < 0.9 ? Math.floor(rnd() * 8192) : Math.floor(rnd() * 65536);
    fs.writeFileSync(path.join(dir, `f${i}.txt`), blob.subarray(0, size));
  }
  sh('tar', ['-cf', path.join(data, 'tree.tar'), '-C', path.join(data, 'gen'), 'tree']);
  const repo = path.join(data, 'gitrepo');
  fs.cpSync(tree, repo, { recursive: true });
  const g = (...a: string[]): string => sh('git', ['-C', repo, '-c', 'user.name=bench', '-c', 'user.email=bench@localhost', ...a]);
  g('init', '-q'); g('add', '-A'); g('commit', '-q', '-m', 'bench tree');
  // The fd-budget sweep set: 1000 files of 256 bytes per directory.
  const sweep = path.join(data, 'sweep');
  const small = blob.subarray(0, 256);
  for (let i = 0; i < SIZES.sweepFiles; i++) {
    const dir = path.join(sweep, `d${Math.floor(i / 1000)}`);
    if (i % 1000 === 0) fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `f${i}`), small);
  }
  fs.writeFileSync(stamp, stampWant);
}

// ---------------------------------------------------------------- workload implementations
// In batches of CSU_BATCH files (create all, stat all, unlink all): at most CSU_BATCH new files
// are alive at once, so a server that keeps an fd per known inode (passthrough_ll) stays under
// RLIMIT_NOFILE (20000 here, and the hard limit cannot be raised without CAP_SYS_RESOURCE).
const CSU_BATCH = 1000;
function createStatUnlink(c: Ctx): Measured {
  const dir = path.join(c.dir, 'csu');
  fs.mkdirSync(dir);
  const payload = Buffer.alloc(100, 'x');
  const names = Array.from({ length: SIZES.csuFiles }, (_, i) => path.join(dir, `file-${i}`));
  let tc = 0, ts = 0, tu = 0;
  for (let b = 0; b < names.length; b += CSU_BATCH) {
    const batch = names.slice(b, b + CSU_BATCH);
    const t0 = now();
    for (const p of batch) { const fd = fs.openSync(p, 'wx', 0o644); fs.writeSync(fd, payload); fs.closeSync(fd); }
    const t1 = now();
    for (const p of batch) fs.statSync(p);
    const t2 = now();
    for (const p of batch) fs.unlinkSync(p);
    const t3 = now();
    tc += t1 - t0; ts += t2 - t1; tu += t3 - t2;
  }
  fs.rmdirSync(dir);
  const total = tc + ts + tu;
  return { value: total, unit: 's', better: 'lower',
    detail: { batch: CSU_BATCH, create_s: tc, stat_s: ts, unlink_s: tu, files_per_s: SIZES.csuFiles / total } };
}
function tarX(c: Ctx): Measured {
  const s = timed('tar', ['-xf', path.join(WORK, 'data', 'tree.tar'), '-C', c.dir]);
  return { value: s, unit: 's', better: 'lower', detail: { files: SIZES.treeFiles } };
}
async function findStatCold(c: Ctx): Promise<Measured> {
  await c.remount(); // a fresh server and kernel state; then the host caches too
  dropCaches();
  // -printf %s/%i/%m needs a stat of every entry
  const s = timed('find', [path.join(c.dir, 'tree'), '-printf', '%s %i %m %p\n']);
  return { value: s, unit: 's', better: 'lower' };
}
function duS(c: Ctx): Measured {
  return { value: timed('du', ['-s', path.join(c.dir, 'tree')]), unit: 's', better: 'lower' };
}
async function gitStatus(c: Ctx): Promise<Measured> {
  // The repository was copied natively into the shared directory before the mount.
  const repo = path.join(c.dir, 'gitrepo');
  await c.remount(); // forget the tree's inodes (passthrough_ll holds an fd for each: RLIMIT_NOFILE)
  const warm = timed('git', ['-C', repo, 'status', '--porcelain']); // refreshes the index (new inode numbers)
  const runs: number[] = [];
  const c0 = c.cpu();
  for (let i = 0; i < SIZES.gitRuns; i++) runs.push(timed('git', ['-C', repo, 'status', '--porcelain']));
  // the server's CPU per timed run (the untimed first run is not in it)
  const c1 = c.cpu();
  const cpu = c0 === null || c1 === null ? undefined : +((c1 - c0) / SIZES.gitRuns).toFixed(3);
  runs.sort((a, b) => a - b);
  return { value: runs[Math.floor(runs.length / 2)]!, unit: 's', better: 'lower', server_cpu_s: cpu, detail: { first_run_s: warm, runs } };
}
interface FioSide {
  iops: number;
  io_bytes: number;
  runtime: number;
  clat_ns: { mean: number };
}
function fio(c: Ctx, rw: 'write' | 'read' | 'randread' | 'randread4'): Measured {
  const dir = path.join(c.dir, 'fio');
  fs.mkdirSync(dir, { recursive: true });
  const common = ['--name=bench', `--filename=${path.join(dir, 'data.bin')}`, '--ioengine=psync', '--invalidate=0',
    `--size=${SIZES.seqMiB}m`, `--runtime=${FIO_RUNTIME_S}`, '--output-format=json', '--thread'];
  const spec = {
    write: ['--rw=write', '--bs=1m', '--end_fsync=1'],
    read: ['--rw=read', '--bs=1m'],
    randread: ['--rw=randread', '--bs=4k', `--io_size=${SIZES.randMiB}m`, '--randrepeat=1', '--random_generator=lfsr'],
    // four readers of the same file, reported as one (group_reporting: jobs[0] is their sum)
    randread4: ['--rw=randread', '--bs=4k', `--io_size=${SIZES.randMiB}m`, '--randrepeat=1', '--random_generator=lfsr', '--numjobs=4', '--group_reporting'],
  }[rw];
  spawnSync('sync');
  // the page cache this run fills: the file (the random readers may touch all of it)
  backMemory(SIZES.seqMiB * 1.5);
  const r0 = reportedKib();
  const out = JSON.parse(sh('fio', [...common, ...spec], { capture: true })) as { jobs: { job_runtime: number; read: FioSide; write: FioSide }[] };
  const r1 = reportedKib();
  // free memory the host was told of during the run (backMemory's effect wears off as it grows)
  const reported = r0 === null || r1 === null ? {} : { host_reported_MiB: Math.round((r1 - r0) / 1024) };
  const j = out.jobs[0]!;
  const side = rw === 'write' ? j.write : j.read;
  if (rw === 'randread' || rw === 'randread4') {
    return { value: side.iops, unit: 'IOPS', better: 'higher', detail: { MiB: side.io_bytes / 1048576, runtime_ms: side.runtime, clat_mean_us: side.clat_ns.mean / 1000, ...reported } };
  }
  // bandwidth over the whole job, end_fsync included for the write (job_runtime covers it)
  const secs = (j.job_runtime || side.runtime) / 1000;
  return { value: side.io_bytes / 1048576 / secs, unit: 'MiB/s', better: 'higher', detail: { MiB: side.io_bytes / 1048576, seconds: secs, ...reported } };
}

// The fd-budget sweep: directory by directory (1000 files each), a stat pass over its files, then
// a read pass: every file's inode fd was opened by the stat pass, and a budget below 1000 has
// evicted most of them by the time the read opens the file, so the read pass reopens them.
// Time-boxed: stops at a directory boundary after SWEEP_CAP_S; the figure of merit is µs per file.
const SWEEP_CAP_S = QUICK ? 12 : 40;
interface Pass {
  files: number;
  stat_s: number;
  read_s: number;
  total_s: number;
  us_per_file: number;
  capped: boolean;
  /** the budget the server chose (its "mounted ... fd budget N" info line) */
  budget?: number | null;
}
function statReadPass(dir: string, capS = Infinity): Pass {
  const dirs = fs.readdirSync(dir).sort();
  let n = 0, st = 0, rd = 0, capped = false;
  for (const d of dirs) {
    if (st + rd >= capS) { capped = true; break; }
    const p = path.join(dir, d);
    const t0 = now();
    const names = fs.readdirSync(p);
    for (const f of names) fs.statSync(path.join(p, f));
    const t1 = now();
    for (const f of names) fs.readFileSync(path.join(p, f));
    const t2 = now();
    n += names.length; st += t1 - t0; rd += t2 - t1;
  }
  return { files: n, stat_s: st, read_s: rd, total_s: st + rd, us_per_file: ((st + rd) / n) * 1e6, capped };
}

// ---------------------------------------------------------------- run
function machine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? os.cpus()[0]?.model;
  const ver = (c: string, a: string[]): string => { try { return execFileSync(c, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0]!; } catch { return 'n/a'; } };
  const fstype = ver('findmnt', ['-n', '-o', 'FSTYPE', '-T', WORK]);
  return {
    cpu: cpu?.trim(), cores: os.cpus().length, kernel: os.release(), memory_gib: Math.round(os.totalmem() / 2 ** 30),
    node: process.version, fs: fstype, fsNote: process.env.HANDLEFS_BENCH_FS_NOTE ?? null, fio: ver('fio', ['--version']), bindfs: ver('bindfs', ['--version']),
    libfuse3: ver('pkg-config', ['--modversion', 'fuse3']), git: ver('git', ['--version']), tar: ver('tar', ['--version']),
  };
}

// The server's CPU time in seconds, from /proc/PID/stat: user + system of every thread of the
// process and of its live descendants (a supervised server's worker), plus what their children
// that ended and were reaped used (cutime + cstime: a worker that was replaced stays counted).
const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; } })();
/** [ppid, utime + stime + cutime + cstime in ticks] of `pid`, or null once it is gone */
function procStat(pid: number | string): [number, number] | null {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    // from field 3 (state): ppid is field 4, utime..cstime are fields 14 to 17
    return [Number(f[1]), Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])];
  } catch {
    return null;
  }
}
function procCpuS(pid: number): number | null {
  const root = procStat(pid);
  if (!root) return null;
  const children = new Map<number, [number, number][]>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const st = procStat(e);
    if (!st) continue;
    let l = children.get(st[0]);
    if (!l) children.set(st[0], (l = []));
    l.push([Number(e), st[1]]);
  }
  let ticks = root[1];
  const todo = [pid];
  while (todo.length) {
    for (const [child, t] of children.get(todo.pop()!) ?? []) {
      ticks += t;
      todo.push(child);
    }
  }
  return ticks / CLK_TCK;
}

const errorText = (e: unknown): string => String((e as Error)?.message ?? e);

async function runTarget(target: Target, results: Record<string, Record<string, Outcome>>): Promise<void> {
  const shared = path.join(WORK, `shared-${target.id}`);
  const mnt = path.join(WORK, `mnt-${target.id}`);
  fs.rmSync(shared, { recursive: true, force: true });
  fs.mkdirSync(shared, { recursive: true });
  fs.mkdirSync(mnt, { recursive: true });
  fs.cpSync(path.join(WORK, 'data', 'gitrepo'), path.join(shared, 'gitrepo'), { recursive: true });
  let server: ChildProcess | null = null;
  // server CPU: what servers stopped since the run began used, plus what the live one used since
  // it was ready (a workload that remounts is charged for both of its servers)
  let cpuBase = 0, cpuDone = 0;
  const cpuNow = (): number => cpuDone + (server ? (procCpuS(server.pid!) ?? cpuBase) - cpuBase : 0);
  const mount = async (): Promise<void> => {
    if (target.native) return;
    server = await startServer(target, shared, mnt);
    cpuBase = procCpuS(server.pid!) ?? 0;
  };
  const unmount = async (): Promise<void> => {
    if (!server) return;
    cpuDone = cpuNow();
    await stopServer(server);
    server = null;
  };
  const ctx: Ctx = { target, dir: target.native ? shared : mnt, remount: async () => { await unmount(); await mount(); },
    cpu: () => (target.native ? null : cpuNow()) };
  const res: Record<string, Outcome> = (results[target.id] = {});
  try {
    await mount();
    for (const w of WORKLOADS) {
      if (ONLY_WORKLOADS && !ONLY_WORKLOADS.includes(w.id)) continue;
      spawnSync('sync');
      try {
        const c0 = cpuNow();
        const rows0 = target.threadStats ? threadRows(mnt) : null;
        const r = await w.run(ctx);
        // over the whole workload, unless it measured its timed part itself
        if (!target.native && r.server_cpu_s === undefined) r.server_cpu_s = +(cpuNow() - c0).toFixed(3);
        if (target.threadStats) {
          // the counters are written every second: what each thread read, served and handed over during the workload
          await new Promise((ok) => setTimeout(ok, 1200));
          const rows = threadRows(mnt);
          if (rows) {
            // a workload that remounted has a new server, counting from zero
            const fresh = !rows0 || rows.some((t, i) => t.requests < (rows0[i]?.requests ?? 0));
            r.detail = { ...r.detail, threads: rows.map((t, i) => {
              // a thread that started during the workload counts from zero too
              const b = (fresh ? undefined : rows0?.[i]) ?? { requests: 0, served: 0, handedOver: 0 };
              const byOp: Record<string, number> = {};
              for (const [op, n] of Object.entries(t.handedOverByOp ?? {})) {
                const d = n - (b.handedOverByOp?.[op] ?? 0);
                if (d > 0) byOp[op] = d;
              }
              return { requests: t.requests - b.requests, served: t.served - b.served, handedOver: t.handedOver - b.handedOver, handedOverByOp: byOp };
            }) };
          }
        }
        res[w.id] = r;
        const v = r.unit === 's' ? `${r.value.toFixed(3)} s` : `${r.value.toFixed(0)} ${r.unit}`;
        say(`${target.id.padEnd(22)} ${w.label.padEnd(48)} ${v}${r.server_cpu_s != null ? `, server CPU ${r.server_cpu_s.toFixed(2)} s` : ''}`);
      } catch (e) {
        res[w.id] = { error: errorText(e) };
        say(`${target.id.padEnd(22)} ${w.label.padEnd(48)} FAILED: ${errorText(e)}`);
        if (!target.native && !isMounted(mnt)) { say(`  ${target.id}: the mount is gone; remounting`); await unmount(); await mount(); }
      }
    }
  } finally {
    await unmount();
    fs.rmSync(shared, { recursive: true, force: true });
  }
}

type SweepOutcome = Pass | { error: string };
interface Sweep {
  budgets: Partial<Record<(typeof SWEEP_BUDGETS)[number], SweepOutcome>>;
  native: Pass;
  autoBudget?: string;
}

async function runSweep(target: Target): Promise<Sweep> {
  const shared = path.join(WORK, 'data', 'sweep');
  const mnt = path.join(WORK, `mnt-${target.id}`);
  fs.mkdirSync(mnt, { recursive: true });
  const out: Sweep['budgets'] = {};
  // warm the host caches first (untimed), so the first budget does not pay for cold data
  statReadPass(shared);
  for (const b of SWEEP_BUDGETS) {
    const logf = path.join(WORK, 'logs', `${target.id}.log`);
    const logAt = fs.existsSync(logf) ? fs.statSync(logf).size : 0;
    const server = await startServer(target, shared, mnt, ['--fd-budget', b, '--log-level', 'info']);
    try {
      const r = statReadPass(mnt, SWEEP_CAP_S);
      // the budget the server chose (its "mounted ... fd budget N" info line)
      const m = fs.readFileSync(logf, 'utf8').slice(logAt).match(/fd budget (\d+)/);
      r.budget = m ? Number(m[1]) : null;
      out[b] = r;
      say(`${target.id.padEnd(22)} ${`fd budget ${b}: stat+read ${r.files} files${r.capped ? ' (time box)' : ''}`.padEnd(48)} ${r.total_s.toFixed(3)} s = ${r.us_per_file.toFixed(0)} µs/file (stat ${r.stat_s.toFixed(2)}, read ${r.read_s.toFixed(2)})`);
    } catch (e) {
      out[b] = { error: errorText(e) };
      say(`${target.id.padEnd(22)} fd budget ${b}: FAILED: ${errorText(e)}`);
    } finally {
      await stopServer(server);
    }
  }
  const native = statReadPass(shared);
  say(`${'native'.padEnd(22)} ${`stat+read ${native.files} files (warm)`.padEnd(48)} ${native.total_s.toFixed(3)} s = ${native.us_per_file.toFixed(0)} µs/file`);
  return { budgets: out, native };
}

// speed ratio of a to b (>1: a is faster)
function speed(a: Outcome | undefined, b: Outcome | undefined): number | null {
  if (!a || !b || 'error' in a || 'error' in b || !(a.value > 0) || !(b.value > 0)) return null;
  return a.better === 'lower' ? b.value / a.value : a.value / b.value;
}
const fmt = (x: number | null, d = 2): string => (x == null ? 'n/a' : x.toFixed(d));
const secs = (x: number | null | undefined): string => (x == null ? 'n/a' : `${x.toFixed(2)} s`);
const cpuOf = (r: Outcome | undefined): number | undefined => (r && !('error' in r) ? r.server_cpu_s : undefined);
const isPass = (r: SweepOutcome | undefined): r is Pass => !!r && !('error' in r);

interface Check {
  id: string;
  pass: boolean | null;
  value: number | null;
  text: string;
}
interface Doc {
  date: string;
  quick: boolean;
  machine: ReturnType<typeof machine>;
  sizes: typeof SIZES;
  targets: Pick<Target, 'id' | 'label' | 'cache' | 'threadStats'>[];
  results: Record<string, Record<string, Outcome>>;
  sweep: Sweep | null;
  ratios?: Record<string, Record<string, Record<string, number | null>>>;
  checks?: Check[];
  elapsed_s?: number;
}

function report(doc: Doc): string {
  const { results, targets } = doc;
  const ids = targets.map((t) => t.id);
  const lab = Object.fromEntries(targets.map((t) => [t.id, t.label]));
  const wl = WORKLOADS.filter((w) => !ONLY_WORKLOADS || ONLY_WORKLOADS.includes(w.id));
  const lines: string[] = [];
  const m = doc.machine;
  lines.push(`### Benchmark: handlefs against its peers`, '');
  lines.push(`${doc.date} · ${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB, Linux ${m.kernel}, ${m.fs} · Node ${m.node} · ${doc.quick ? '**--quick** sizes' : 'full sizes'} · \`scripts/bench\``, '');
  const val = (r: Outcome | undefined): string => (!r ? 'n/a' : 'error' in r ? 'failed' : r.unit === 's' ? `${r.value.toFixed(2)} s` : `${Math.round(r.value)} ${r.unit}`);
  lines.push('Measured values:', '');
  lines.push(`| workload | ${ids.map((i) => lab[i]).join(' | ')} |`, `|---|${ids.map(() => '---:').join('|')}|`);
  for (const w of wl) lines.push(`| ${w.label} | ${ids.map((i) => val(results[i]?.[w.id])).join(' | ')} |`);
  lines.push('');
  const ratioTable = (ref: string, title: string): void => {
    lines.push(title, '');
    const cols = ids.filter((i) => i !== ref);
    lines.push(`| workload | ${cols.map((i) => lab[i]).join(' | ')} |`, `|---|${cols.map(() => '---:').join('|')}|`);
    for (const w of wl) lines.push(`| ${w.label} | ${cols.map((i) => fmt(speed(results[i]?.[w.id], results[ref]?.[w.id]))).join(' | ')} |`);
    lines.push('');
  };
  const fuseIds = ids.filter((i) => results[i] && Object.values(results[i]!).some((r) => cpuOf(r) != null));
  if (fuseIds.length) {
    lines.push('Server CPU time per workload (user + system, all threads of the server\'s processes: with --supervise the supervisor and its worker; from /proc/PID/stat of the server and its descendants; the client\'s own time is not in it; git status: per timed run):', '');
    lines.push(`| workload | ${fuseIds.map((i) => lab[i]).join(' | ')} |`, `|---|${fuseIds.map(() => '---:').join('|')}|`);
    for (const w of wl) lines.push(`| ${w.label} | ${fuseIds.map((i) => secs(cpuOf(results[i]?.[w.id]))).join(' | ')} |`);
    lines.push('');
  }
  if (ids.includes('native')) ratioTable('native', 'Speed relative to native (1.00 = native; higher is faster):');
  if (ids.includes('passthrough_ll')) ratioTable('passthrough_ll', 'Speed relative to passthrough_ll (higher is faster):');
  if (ids.includes('passthrough_ll-1t')) ratioTable('passthrough_ll-1t', 'Speed relative to passthrough_ll -s, one thread (higher is faster):');
  if (ids.includes('handlefs-raw') && ids.includes('handlefs-supervised')) {
    lines.push('Supervised vs plain: handlefs raw --supervise against handlefs raw (speed: plain time / supervised time, higher is faster, 1.00 = as fast, below 1 = the supervision costs; CPU: both processes of the supervised server):', '');
    lines.push('| workload | speed --supervise / plain | CPU plain | CPU --supervise | CPU --supervise / plain |', '|---|---:|---:|---:|---:|');
    for (const w of wl) {
      const plain = results['handlefs-raw']?.[w.id], sup = results['handlefs-supervised']?.[w.id];
      const cp = cpuOf(plain), cs = cpuOf(sup);
      lines.push(`| ${w.label} | ${fmt(speed(sup, plain))} | ${secs(cp)} | ${secs(cs)} | ${cp && cs != null ? fmt(cs / cp) : 'n/a'} |`);
    }
    lines.push('');
  }
  for (const t of targets.filter((x) => x.threadStats && results[x.id])) {
    lines.push(`Requests per serving thread (${t.label}; from its --stats-file, so a workload that remounts shows its last server): read by each thread, and of those the other threads served themselves / handed to the thread that runs the filesystem:`, '');
    lines.push('| workload | threads | requests per thread | served there (other threads) | handed over | most handed over |', '|---|---:|---|---:|---:|---|');
    for (const w of wl) {
      const r = results[t.id]?.[w.id];
      const rows = r && !('error' in r) ? (r.detail?.threads as ThreadRow[] | undefined) : undefined;
      if (!rows) { lines.push(`| ${w.label} | n/a | | | | |`); continue; }
      const others = rows.slice(1);
      const byOp = new Map<string, number>();
      for (const x of others) for (const [op, n] of Object.entries(x.handedOverByOp ?? {})) byOp.set(op, (byOp.get(op) ?? 0) + n);
      const top = [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([op, n]) => `${op} ${n}`).join(', ');
      lines.push(`| ${w.label} | ${rows.length} | ${rows.map((x) => x.requests).join(' / ')} | ${others.reduce((n, x) => n + x.served, 0)} | ${others.reduce((n, x) => n + x.handedOver, 0)} | ${top} |`);
    }
    lines.push('');
  }
  if (doc.sweep) {
    lines.push(`fd-budget sweep (handlefs raw), fresh mount per budget: ${SIZES.sweepFiles} files of 256 bytes in directories of 1000; per directory a stat pass over its files, then a read pass (which reopens what the budget evicted). Time-boxed at ${SWEEP_CAP_S} s per budget (stops at a directory boundary); compare µs per file:`, '');
    lines.push('| --fd-budget | files done | µs/file | stat | read | time relative to auto |', '|---|---:|---:|---:|---:|---:|');
    const auto = doc.sweep.budgets.auto;
    const row = (name: string, r: Pass, rel: string): string => `| ${name} | ${r.files}${r.capped ? ' (time box)' : ''} | ${r.us_per_file.toFixed(0)} | ${((r.stat_s / r.files) * 1e6).toFixed(0)} µs | ${((r.read_s / r.files) * 1e6).toFixed(0)} µs | ${rel} |`;
    for (const b of SWEEP_BUDGETS) {
      const r = doc.sweep.budgets[b];
      lines.push(!isPass(r) ? `| ${b} | failed | | | | |` :
        row(b === 'auto' ? `auto (${doc.sweep.autoBudget})` : b, r, isPass(auto) ? (r.us_per_file / auto.us_per_file).toFixed(2) + '×' : 'n/a'));
    }
    lines.push(row('native (no FUSE)', doc.sweep.native, ''), '');
  }
  lines.push('Targets (tracked here, never by a timed test):', '');
  for (const c of doc.checks ?? []) lines.push(`- **${c.pass == null ? 'N/A' : c.pass ? 'PASS' : 'FAIL'}** ${c.text}`);
  lines.push('', 'Cache settings (identical where the servers allow):', '');
  for (const t of targets) lines.push(`- ${t.label}: ${t.cache}`);
  const fsNote = doc.machine.fsNote ? ` (${doc.machine.fsNote}: no target pays for the deletions of those before it)` : '';
  lines.push('', `Method: one run, targets one after another, each on its own copy of the data on the same ${doc.machine.fs} file system${fsNote}. ` +
    'Times are wall-clock of the whole command. Cold caches = server restarted (fresh mount) and `echo 3 > /proc/sys/vm/drop_caches`. ' +
    'fio: psync, one job, `--invalidate=0` (reads come from the host page cache, so they measure the server, not the disk); the write includes `end_fsync`; ' +
    'before each fio run a throw-away process touches and frees 1.5x the file size, so that the page cache the run fills is memory the host backs (this VM reports free memory to its host, which discards it: tools/bench.ts, backMemory). ' +
    'git status runs once untimed first (it refreshes the index: the copied repository has new inode numbers).', '');
  return lines.join('\n');
}

function checks(doc: Doc): Check[] {
  const r = doc.results;
  const out: Check[] = [];
  const hr = r['handlefs-raw'];
  const wl = WORKLOADS.filter((x) => !ONLY_WORKLOADS || ONLY_WORKLOADS.includes(x.id));
  // speed: against the one-threaded passthrough_ll on metadata (one serving thread each), against
  // the default multi-threaded one on sequential I/O
  for (const [group, ref, refLabel, min, name] of [['metadata', 'passthrough_ll-1t', 'passthrough_ll -s', 1.0, 'every metadata workload'],
    ['seqio', 'passthrough_ll', 'passthrough_ll', 0.8, 'sequential I/O']] as const) {
    for (const w of wl.filter((x) => x.group === group)) {
      const s = speed(hr?.[w.id], r[ref]?.[w.id]);
      out.push({ id: `${w.id}>=${min}x${ref}`, pass: s == null ? null : s >= min, value: s, text: `handlefs raw ≥ ${min.toFixed(1)}× ${refLabel} on ${name}: ${w.label}: ${fmt(s)}×` });
    }
  }
  // server CPU: handlefs raw's / passthrough_ll -s's, per workload
  for (const w of wl) {
    const a = cpuOf(hr?.[w.id]), b = cpuOf(r['passthrough_ll-1t']?.[w.id]);
    const q = a != null && b ? a / b : null;
    out.push({ id: `${w.id}:cpu<=1.3x`, pass: q == null ? null : q <= 1.3, value: q, text: `handlefs raw's server CPU within 1.3× of passthrough_ll -s: ${w.label}: ${fmt(q)}× (${secs(a)} against ${secs(b)})` });
  }
  // several serving threads (issue 15): against passthrough_ll with its thread pool on metadata;
  // I/O no worse than one thread; 4 random-read jobs at least 1.5x one thread
  const ht = r['handlefs-threads'];
  if (ht) {
    for (const w of wl.filter((x) => x.group === 'metadata')) {
      const sp = speed(ht[w.id], r.passthrough_ll?.[w.id]);
      out.push({ id: `${w.id}:threads>=1.0xpassthrough_ll`, pass: sp == null ? null : sp >= 1, value: sp, text: `handlefs --threads auto ≥ 1.0× passthrough_ll (thread pool) on every metadata workload: ${w.label}: ${fmt(sp)}×` });
    }
    for (const w of wl.filter((x) => x.group !== 'metadata')) {
      const sp = speed(ht[w.id], hr?.[w.id]);
      const min = w.id === 'rand_read_4k_4jobs' ? 1.5 : 1.0;
      out.push({ id: `${w.id}:threads>=${min}xraw`, pass: sp == null ? null : sp >= min, value: sp, text: `handlefs --threads auto ≥ ${min.toFixed(1)}× handlefs raw (one thread): ${w.label}: ${fmt(sp)}×` });
    }
  }
  // FUSE over io_uring: what it buys over /dev/fuse, with one thread and with a thread per CPU,
  // and the threaded ring against passthrough_ll's thread pool on metadata
  for (const [ring, dev, label] of [['handlefs-uring', 'handlefs-raw', 'one thread'], ['handlefs-threads-uring', 'handlefs-threads', '--threads auto']] as const) {
    if (!r[ring]) continue;
    for (const w of wl) {
      const sp = speed(r[ring][w.id], r[dev]?.[w.id]);
      out.push({ id: `${w.id}:${ring}>=1.0x${dev}`, pass: sp == null ? null : sp >= 1, value: sp, text: `io_uring ≥ 1.0× /dev/fuse (${label}): ${w.label}: ${fmt(sp)}×` });
    }
  }
  if (r['handlefs-threads-uring']) {
    for (const w of wl.filter((x) => x.group === 'metadata')) {
      const sp = speed(r['handlefs-threads-uring'][w.id], r.passthrough_ll?.[w.id]);
      out.push({ id: `${w.id}:threads-uring>=1.0xpassthrough_ll`, pass: sp == null ? null : sp >= 1, value: sp, text: `handlefs --threads auto --io-uring on ≥ 1.0× passthrough_ll (thread pool): ${w.label}: ${fmt(sp)}×` });
    }
  }
  if (doc.sweep) {
    const a = doc.sweep.budgets.auto, b = doc.sweep.budgets['64'];
    const q = isPass(a) && isPass(b) ? b.us_per_file / a.us_per_file : null;
    out.push({ id: 'fd64', pass: q == null ? null : q <= 2, value: q, text: `fd budget 64 within 2× of unlimited (auto, ${doc.sweep.autoBudget}): ${fmt(q)}× the time per file` });
  }
  return out;
}

async function main(): Promise<void> {
  fs.mkdirSync(WORK, { recursive: true });
  fs.mkdirSync(OUT, { recursive: true });
  if (PROFILE) fs.mkdirSync(PROFILE, { recursive: true });
  prepareData();
  const targets: Target[] = [];
  for (const t of TARGETS) {
    if (ONLY_TARGETS && !ONLY_TARGETS.includes(t.id)) continue;
    const why = t.unavailable?.() ?? null;
    if (why) { say(`${t.id}: skipped (${why})`); continue; }
    targets.push(t);
  }
  const doc: Doc = { date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), quick: QUICK, machine: machine(), sizes: SIZES,
    targets: targets.map(({ id, label, cache, threadStats }) => ({ id, label, cache, threadStats })), results: {}, sweep: null };
  say(`machine: ${doc.machine.cpu}, ${doc.machine.cores} cores, Linux ${doc.machine.kernel}; work dir ${WORK}; ${QUICK ? 'quick' : 'full'} sizes`);
  for (const t of targets) await runTarget(t, doc.results);
  const sweepTarget = targets.find((t) => t.sweep);
  if (SWEEP && sweepTarget) {
    const sweep = await runSweep(sweepTarget);
    const lim = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
    const auto = sweep.budgets.auto;
    sweep.autoBudget = `${(isPass(auto) ? auto.budget : null) ?? '?'} fds, from RLIMIT_NOFILE ${lim}`;
    doc.sweep = sweep;
  }
  const ratios: NonNullable<Doc['ratios']> = {};
  for (const ref of ['native', 'passthrough_ll', 'passthrough_ll-1t']) {
    const byTarget: Record<string, Record<string, number | null>> = (ratios[`to_${ref}`] = {});
    for (const t of targets) {
      byTarget[t.id] = Object.fromEntries(WORKLOADS.map((w) => [w.id, speed(doc.results[t.id]?.[w.id], doc.results[ref]?.[w.id])]));
    }
  }
  doc.ratios = ratios;
  doc.checks = checks(doc);
  doc.elapsed_s = Math.round((Date.now() - T0) / 1000);
  const md = report(doc);
  if (!PROFILE && !ONLY_TARGETS && !ONLY_WORKLOADS) {
    fs.writeFileSync(path.join(OUT, 'results.json'), JSON.stringify(doc, null, 2) + '\n');
    fs.writeFileSync(path.join(OUT, 'results.md'), md + '\n');
    say(`wrote ${path.relative(REPO, OUT)}/results.json and results.md (${doc.elapsed_s} s)`);
  } else {
    // beside WORK, not in it: scripts/bench removes the file system it makes at WORK
    const f = PROFILE ? path.join(PROFILE, 'partial-results.json') : `${WORK}.partial-results.json`;
    fs.writeFileSync(f, JSON.stringify(doc, null, 2) + '\n');
    say(`partial run: bench/ left alone; results in ${f}`);
  }
  process.stdout.write(md + '\n');
  if (PROFILE) summarizeProfiles(PROFILE);
}

// ---------------------------------------------------------------- cpu profile summary
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}
function summarizeProfiles(p: string): void {
  const files = fs.statSync(p).isDirectory() ? fs.readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(p, f)) : [p];
  for (const f of files) {
    const prof = JSON.parse(fs.readFileSync(f, 'utf8')) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const self = new Map<CpuProfile['nodes'][number], number>();
    const dt = prof.timeDeltas;
    for (let i = 0; i < prof.samples.length; i++) {
      const n = byId.get(prof.samples[i]!)!;
      self.set(n, (self.get(n) ?? 0) + (dt[i] ?? 0));
    }
    const total = [...self.values()].reduce((a, b) => a + b, 0);
    const fn = new Map<string, number>(), file = new Map<string, number>();
    for (const [n, t] of self) {
      const cf = n.callFrame;
      const url = cf.url ? cf.url.replace(`file://${REPO}/`, '') : '';
      const k = `${cf.functionName || '(anonymous)'}  ${url}${url ? `:${cf.lineNumber + 1}` : ''}`;
      fn.set(k, (fn.get(k) ?? 0) + t);
      const fk = url || cf.functionName;
      file.set(fk, (file.get(fk) ?? 0) + t);
    }
    const top = (m: Map<string, number>, k: number): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, k)
      .map(([name, t]) => `  ${(t / 1000).toFixed(0).padStart(7)} ms ${((100 * t) / total).toFixed(1).padStart(5)}%  ${name}`).join('\n');
    const text = `${f}: ${(total / 1e6).toFixed(2)} s sampled\ntop self time by function:\n${top(fn, 25)}\ntop self time by file:\n${top(file, 15)}\n`;
    fs.writeFileSync(f.replace(/\.cpuprofile$/, '.summary.txt'), text);
    process.stdout.write(text);
  }
}

try {
  await main();
} finally {
  await stopAll();
}
