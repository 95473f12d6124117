// Micro-benchmark of the filesystem core (no mount); scripts/bench-core runs it after set-up.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { FsError } from '../dist/errors.js';
import { PassthroughFs } from '../dist/fs/passthrough.js';
import { ephemeralKey } from '../dist/handle/key.js';
import { probeCaps } from '../dist/sys/caps.js';
import { parseCli } from './lib/args.js';

const cli = parseCli({
  prog: 'bench-core',
  usage: `usage: scripts/bench-core [FILES] [ROUNDS]

The cost of a getattr that hits the fd cache, one that reopens by path, and one that reopens by
handle, in microseconds per operation, on FILES files and FILES directories (default 2000) in a
temporary directory, median of ROUNDS rounds (default 5).`,
  options: {},
  maxPositionals: 2,
});
const N = cli.wholeNumber('FILES', cli.positionals[0], 2000, 1, 10_000_000);
const ROUNDS = cli.wholeNumber('ROUNDS', cli.positionals[1], 5, 1, 1000);
const ctx = { uid: 0, gid: 0, pid: process.pid, unique: 1n };
const top = fs.mkdtempSync(path.join(os.tmpdir(), 'hfs-bench-core-'));

interface Measured {
  usPerGetattr: number;
  reopens: number;
  hits: number;
}

/** A lookup's entry; a missing name (an FsError value) is an error here. */
function found<T>(e: T | FsError): T {
  if (e instanceof FsError) throw e;
  return e;
}

async function measure(reopen: 'path' | 'handle', budget: number, prefix = 'f'): Promise<Measured> {
  const pfs = new PassthroughFs({ root: top, fdBudget: budget, reopen, key: ephemeralKey(), cache: 'auto', xattr: true, creds: false, log: pino({ level: 'silent' }) });
  const nodes: bigint[] = [];
  for (let i = 0; i < N; i++) {
    const d = found(await pfs.lookup(ctx, 1n, Buffer.from(`d${i % 10}`)));
    nodes.push(found(await pfs.lookup(ctx, d.nodeid, Buffer.from(`${prefix}${i}`))).nodeid);
  }
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (const n of nodes) await pfs.getattr(ctx, n);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000 / N);
  }
  const c = pfs.counters();
  await pfs.destroy();
  samples.sort((a, b) => a - b);
  return { usPerGetattr: samples[Math.floor(samples.length / 2)]!, reopens: c.reopenByPath + c.reopenByHandle, hits: c.hits };
}

try {
  for (let d = 0; d < 10; d++) fs.mkdirSync(path.join(top, `d${d}`));
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(top, `d${i % 10}`, `f${i}`), 'x');
  // directories too: open_by_handle_at is used for directories only (files are re-walked by name)
  for (let i = 0; i < N; i++) fs.mkdirSync(path.join(top, `d${i % 10}`, `e${i}`));

  const hit = await measure('path', N * 2 + 64);
  const byPath = await measure('path', 8);
  const dirByPath = await measure('path', 8, 'e');
  const byHandle = probeCaps().dacReadSearch ? await measure('handle', 8, 'e') : null;
  const rows: [string, Measured | null][] = [
    ['getattr of a file, fd cache hit', hit],
    ['getattr of a file + reopen by path (file and parent, depth 2)', byPath],
    ['getattr of a directory + reopen by path (depth 2)', dirByPath],
    ['getattr of a directory + reopen by handle (+ proof beneath the root by walking ..)', byHandle],
  ];
  console.log(`handlefs core, ${N} files, median of ${ROUNDS} rounds, ${os.cpus().length} cpus, node ${process.version}`);
  console.log('| operation | us/op | reopens |');
  console.log('|---|---:|---:|');
  for (const [name, r] of rows) console.log(r ? `| ${name} | ${r.usPerGetattr.toFixed(2)} | ${r.reopens} |` : `| ${name} | n/a (no CAP_DAC_READ_SEARCH) | |`);
  console.log(`reopen by path costs ${(byPath.usPerGetattr - hit.usPerGetattr).toFixed(2)} us over a hit`);
  if (byHandle) console.log(`reopen of a directory by handle costs ${(byHandle.usPerGetattr - hit.usPerGetattr).toFixed(2)} us over a hit`);
} finally {
  fs.rmSync(top, { recursive: true, force: true });
}
