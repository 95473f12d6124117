// The guest benchmark (scripts/bench-virtiofs runs it after set-up): the same QEMU guest against two
// vhost-user-fs back-ends in one run, shares on tmpfs, each workload timed inside the guest.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import { parseCli } from './lib/args.js';
import {
  commandBackend,
  guestKernel,
  guestMissing,
  handlefsBackend,
  killLiveChildren,
  manyFiles,
  parseWalk,
  virtiofsdBackend,
  withBackend,
  type Backend,
  type BootResult,
  type Walk,
} from './lib/guest.js';
import { REPO } from './lib/repo.js';

const cli = parseCli({
  prog: 'bench-virtiofs',
  usage: `usage: scripts/bench-virtiofs [options]

Boots the same guest (QEMU TCG, busybox, the cloud kernel's virtiofs) against back-end A and
back-end B, shares on tmpfs (/dev/shm), and times inside the guest: create, stat (after
drop_caches) and unlink of N files, tar -x of a tarball, find and du of the result, a sequential
dd write and read; then, under RLIMIT_NOFILE=--nofile for the back-end, a walk (lstat every entry,
read every 100th file) of --walk files. Prints a table with B/A ratios and writes JSON.

  --a CMD         back-end A (default: C virtiofsd, ${virtiofsdBackend.argv({ socketPath: '{socket}', sharedDir: '{shared}' }).join(' ')})
  --b CMD         back-end B (default: handlefs, node dist/cli/main.js virtiofsd --socket-path={socket} --shared-dir={shared} --cache=auto)
                  a CMD is one string: {socket}, {shared}, {nofile} are replaced (a word holding
                  {nofile} is dropped when no limit applies)
  --files N       files to create/stat/unlink (default 2000)
  --tar-files N   files in the tarball, 1 to 16 KiB each (default 1000)
  --dd-mib N      size of the sequential write and read (default 64)
  --walk N        files of the fd-exhaustion walk, 0 to skip it (default 100000)
  --nofile N      the back-ends' RLIMIT_NOFILE during the walk (default 1024)
  --timeout S     per boot (default 480)
  --out FILE      the JSON (default bench/virtiofs.json)`,
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    files: { type: 'string' },
    'tar-files': { type: 'string' },
    'dd-mib': { type: 'string' },
    walk: { type: 'string' },
    nofile: { type: 'string' },
    timeout: { type: 'string' },
    out: { type: 'string' },
  },
});
const v = cli.values;
const FILES = cli.wholeNumber('--files', v.files, 2000, 1, 1_000_000);
const TAR_FILES = cli.wholeNumber('--tar-files', v['tar-files'], 1000, 1, 100_000);
const DD_MIB = cli.wholeNumber('--dd-mib', v['dd-mib'], 64, 1, 512);
const WALK = cli.wholeNumber('--walk', v.walk, 100_000, 0, 2_000_000);
const NOFILE = cli.wholeNumber('--nofile', v.nofile, 1024, 64, 1 << 20);
const TIMEOUT_MS = cli.wholeNumber('--timeout', v.timeout, 480, 10, 3600) * 1000;
const OUT = v.out ?? join(REPO, 'bench', 'virtiofs.json');
const backends: Backend[] = [v.a ? commandBackend('A', v.a) : virtiofsdBackend, v.b ? commandBackend('B', v.b) : handlefsBackend];

const missing = guestMissing();
if (missing.length) cli.fail(`cannot boot a guest here: needs ${missing.join(', ')}`);
const shm = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === '/dev/shm' && l.includes(' - tmpfs '));
if (!shm) cli.fail('/dev/shm is not a tmpfs (the shares go there)');

/** ms per workload, from the guest's TIME lines ("TIME label ns status"); a failed one is NaN. */
function times(r: BootResult): { ms: Record<string, number>; failed: string[] } {
  const ms: Record<string, number> = {};
  const failed: string[] = [];
  for (const l of r.lines) {
    const [tag, label, ns, status] = l.split(' ');
    if (tag !== 'TIME' || !label) continue;
    ms[label] = status === '0' ? Number(ns) / 1e6 : NaN;
    if (status !== '0') failed.push(`${label} (status ${status})`);
  }
  return { ms, failed };
}

const WORKLOAD_SCRIPT = `
T() { guest-check time "$@"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mkdir -p /mnt/w /mnt/t
T create guest-check create /mnt/w ${FILES}
drop
T stat guest-check stat /mnt/w ${FILES}
T unlink guest-check unlink /mnt/w ${FILES}
T tar-x tar -xf /bench.tar -C /mnt/t
drop
T find sh -c 'find /mnt/t > /dev/null'
drop
T du sh -c 'du -s /mnt/t > /dev/null'
T dd-write sh -c 'dd if=/dev/zero of=/mnt/big bs=1M count=${DD_MIB} 2>/dev/null && sync'
drop
T dd-read sh -c 'dd if=/mnt/big of=/dev/null bs=1M 2>/dev/null'
true
`;
const WALK_SCRIPT = `guest-check time walk guest-check walk /mnt/many 100\ntrue\n`;

interface BackendResult {
  name: string;
  argv: string[];
  mountedMs?: number;
  ms?: Record<string, number>;
  failed?: string[];
  error?: string;
  walk?: { nofile: number; ms?: number; result?: Walk | null; error?: string };
}

const top = fs.mkdtempSync('/dev/shm/handlefs-bench-virtiofs-');
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killLiveChildren();
    fs.rmSync(top, { recursive: true, force: true });
    process.exit(130);
  });
}
const log = (s: string): void => void process.stderr.write(`bench-virtiofs: ${s}\n`);
const results: BackendResult[] = [];
try {
  // the tarball: TAR_FILES files of 1 to 16 KiB in 20 directories
  const src = join(top, 'tar-src');
  for (let i = 0; i < TAR_FILES; i++) {
    const d = join(src, `d${i % 20}`);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(join(d, `f${i}`), Buffer.alloc(1024 * (1 + (i % 16)), i & 0xff));
  }
  const tar = spawnSync('tar', ['-cf', '-', '-C', src, '.'], { maxBuffer: 1 << 30 });
  if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
  fs.rmSync(src, { recursive: true });
  let walkShare = '';
  if (WALK) {
    walkShare = join(top, 'walk-share');
    log(`making ${WALK} files for the walk`);
    manyFiles(join(walkShare, 'many'), WALK);
  }
  for (const [i, be] of backends.entries()) {
    const share = join(top, `share-${i}`);
    fs.mkdirSync(share);
    const params = { socketPath: join(top, `vhost-${i}.sock`), sharedDir: share };
    const res: BackendResult = { name: be.name, argv: be.argv(params) };
    results.push(res);
    log(`${be.name}: workloads`);
    try {
      const r = await withBackend(be, params, { script: WORKLOAD_SCRIPT, files: [{ path: '/bench.tar', data: tar.stdout }], timeoutMs: TIMEOUT_MS });
      Object.assign(res, { mountedMs: r.ms.mounted }, times(r));
    } catch (e) {
      res.error = String((e as Error).message ?? e);
      log(`${be.name}: ${res.error.split('\n')[0]}`);
    }
    fs.rmSync(share, { recursive: true, force: true });
    if (WALK) {
      log(`${be.name}: walk of ${WALK} files under RLIMIT_NOFILE=${NOFILE}`);
      res.walk = { nofile: NOFILE };
      try {
        const r = await withBackend(be, { ...params, sharedDir: walkShare, nofile: NOFILE }, { script: WALK_SCRIPT, timeoutMs: TIMEOUT_MS });
        Object.assign(res.walk, { ms: times(r).ms.walk, result: parseWalk(r.lines) });
      } catch (e) {
        res.walk.error = String((e as Error).message ?? e);
        log(`${be.name}: walk: ${res.walk.error.split('\n')[0]}`);
      }
    }
  }
} finally {
  fs.rmSync(top, { recursive: true, force: true });
}

// ------------------------------------------------------------------ report
const [a, b] = results as [BackendResult, BackendResult];
const labels = [...new Set([...Object.keys(a.ms ?? {}), ...Object.keys(b.ms ?? {})])];
const fmt = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? 'failed' : x.toFixed(1));
const ratio = (x?: number, y?: number): string => (x && y && !Number.isNaN(x) && !Number.isNaN(y) ? (y / x).toFixed(2) : '-');
const unit: Record<string, string> = {
  create: `${FILES} files`,
  stat: `${FILES} files`,
  unlink: `${FILES} files`,
  'tar-x': `${TAR_FILES} files`,
  find: `${TAR_FILES} files`,
  du: `${TAR_FILES} files`,
  'dd-write': `${DD_MIB} MiB`,
  'dd-read': `${DD_MIB} MiB`,
};
const lines = [
  `virtio-fs in a QEMU TCG guest (${guestKernel().release}), shares on tmpfs; times in ms inside the guest; B/A < 1: B is faster`,
  `A = ${a.name}: ${a.argv.join(' ')}`,
  `B = ${b.name}: ${b.argv.join(' ')}`,
  '',
  '| workload | size | A ms | B ms | B/A |',
  '|---|---|---:|---:|---:|',
  `| boot to mounted | | ${fmt(a.mountedMs)} | ${fmt(b.mountedMs)} | ${ratio(a.mountedMs, b.mountedMs)} |`,
  ...labels.map((l) => `| ${l} | ${unit[l] ?? ''} | ${fmt(a.ms?.[l])} | ${fmt(b.ms?.[l])} | ${ratio(a.ms?.[l], b.ms?.[l])} |`),
];
for (const r of results) {
  if (r.error) lines.push(`${r.name} failed to run the workloads: ${r.error.split('\n')[0]}`);
  if (r.failed?.length) lines.push(`${r.name}: failed workloads: ${r.failed.join(', ')}`);
  if (r.walk) {
    const w = r.walk.result;
    lines.push(
      `${r.name}, walk of ${WALK} files under RLIMIT_NOFILE=${r.walk.nofile}: ` +
        (r.walk.error
          ? `did not finish: ${r.walk.error.split('\n')[0]}`
          : w
            ? `${w.entries} entries, ${w.files} files, ${w.read} read, ${w.errors} errors${w.errors ? ` (first ${w.first})` : ''}, ${fmt(r.walk.ms)} ms`
            : 'no WALK line'),
    );
  }
}
console.log(lines.join('\n'));
const json = {
  date: new Date().toISOString(),
  host: { cpus: os.cpus().length, kernel: os.release(), node: process.version },
  guestKernel: guestKernel().release,
  options: { files: FILES, tarFiles: TAR_FILES, ddMiB: DD_MIB, walk: WALK, nofile: NOFILE },
  backends: results,
};
fs.mkdirSync(dirname(OUT), { recursive: true });
fs.writeFileSync(OUT, `${JSON.stringify(json, null, 2)}\n`);
process.stderr.write(`bench-virtiofs: wrote ${OUT}\n`);
process.exitCode = results.some((r) => r.error) ? 1 : 0;
