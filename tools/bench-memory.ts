// Memory per known inode, in process (no mount): a tree of FILES files is looked up once each
// through the protocol server (LOOKUP requests as the kernel sends them), and the process's RSS
// and V8 heap are compared before and after, with the garbage collected both times. What is left
// is what the server keeps per inode the client knows: the inode table, its indexes and whatever
// else a lookup leaves behind. scripts/bench-memory runs it after set-up (node --expose-gc).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { PassthroughFs } from '../dist/fs/passthrough.js';
import { ProtocolServer } from '../dist/fuse/protocol-server.js';
import { ephemeralKey } from '../dist/handle/key.js';
import { encodeRequest } from '../dist/fuse/codec.js';
import * as A from '../dist/fuse/abi.js';
import { Op } from '../dist/fuse/opcodes.js';
import { parseCli } from './lib/args.js';

const cli = parseCli({
  prog: 'bench-memory',
  usage: `usage: scripts/bench-memory [FILES] [DIR]

Bytes per inode the server knows, in process (no mount): FILES files (default 300000) in 100
directories, made in a temporary directory in DIR (default /dev/shm, else the system temp dir), each
looked up once through the protocol server; RSS and V8 heap before and after (garbage collected),
divided by FILES.`,
  options: {},
  maxPositionals: 2,
});
const N = cli.wholeNumber('FILES', cli.positionals[0], 300_000, 1, 50_000_000);
const BASE = cli.positionals[1] ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
const DIRS = 100;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) cli.fail('run with node --expose-gc (scripts/bench-memory does)');
const collect = (): NodeJS.MemoryUsage => {
  gc!();
  gc!();
  return process.memoryUsage();
};

const top = fs.mkdtempSync(path.join(BASE, 'hfs-bench-memory-'));
try {
  const root = path.join(top, 'share');
  for (let d = 0; d < DIRS; d++) fs.mkdirSync(path.join(root, `d${d}`), { recursive: true });
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(root, `d${i % DIRS}`, `file-${i}`), '');
  const log = pino({ level: 'silent' });
  const pfs = new PassthroughFs({ root, fdBudget: 64, reopen: 'auto', key: ephemeralKey(), cache: 'auto', xattr: true, creds: true, log, stateFile: null });
  const srv = new ProtocolServer(pfs, {}, log);
  const ALL = (1n << 43n) - 1n;
  await srv.handle(encodeRequest({ opcode: Op.INIT, unique: 1n },
    A.encodeStruct(A.InitIn, { major: 7, minor: 45, max_readahead: 131072, flags: Number(ALL & 0xffffffffn), flags2: Number(ALL >> 32n) })));
  let unique = 10n;
  const lookup = async (parent: bigint, name: string): Promise<bigint> => {
    const r = await srv.handle(encodeRequest({ opcode: Op.LOOKUP, unique: ++unique, nodeid: parent }, Buffer.from(`${name}\0`)));
    if (!r || r.readInt32LE(4) !== 0) throw new Error(`LOOKUP ${name}: errno ${r ? -r.readInt32LE(4) : 'none'}`);
    return r.readBigUInt64LE(16);
  };
  const dirs: bigint[] = [];
  for (let d = 0; d < DIRS; d++) dirs.push(await lookup(1n, `d${d}`));
  const before = collect();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await lookup(dirs[i % DIRS]!, `file-${i}`);
  const us = ((performance.now() - t0) * 1000) / N;
  const after = collect();
  const per = (k: keyof NodeJS.MemoryUsage): string => ((after[k] - before[k]) / N).toFixed(0);
  console.log(`handlefs memory per known inode, in process, ${N} files looked up once (${us.toFixed(1)} us per LOOKUP), node ${process.version}, ${BASE}`);
  console.log('| measure | bytes per inode |');
  console.log('|---|---:|');
  console.log(`| RSS | ${per('rss')} |`);
  console.log(`| V8 heap used | ${per('heapUsed')} |`);
  console.log(`| outside the heap (typed arrays, Buffers) | ${per('external')} |`);
  console.log(`RSS after: ${(after.rss / 1e6).toFixed(0)} MB; inodes known: ${pfs.counters().inodes}`);
  await pfs.destroy();
} finally {
  fs.rmSync(top, { recursive: true, force: true });
}
