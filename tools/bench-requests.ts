// The create+stat+unlink request mix of scripts/bench, replayed in this process: once through the
// protocol server (requests encoded as the kernel sends them, replies encoded and checked), once
// straight into the filesystem core. No mount, no /dev/fuse, no wake-ups: what is left is the
// server's own work per request. Compare with the server CPU per file that scripts/bench reports
// for the mounted run: the difference is the event loop and device I/O on cold caches.
// scripts/bench-requests runs it after set-up.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { FsError } from '../dist/errors.js';
import { PassthroughFs } from '../dist/fs/passthrough.js';
import { ProtocolServer } from '../dist/fuse/protocol-server.js';
import { ephemeralKey } from '../dist/handle/key.js';
import { encodeRequest } from '../dist/fuse/codec.js';
import * as A from '../dist/fuse/abi.js';
import { Op } from '../dist/fuse/opcodes.js';
import { parseCli } from './lib/args.js';

const cli = parseCli({
  prog: 'bench-requests',
  usage: `usage: scripts/bench-requests [--state-file] [FILES] [ROUNDS] [DIR]

Microseconds per request of the create+stat+unlink mix of scripts/bench, replayed in process (no
mount): through the protocol server and through the filesystem core alone. FILES files (default
5000), median of ROUNDS rounds (default 3), in a temporary directory made in DIR (default the
system temp dir). --state-file: the core keeps a state file (--state-file of the CLI), beside the
shared directory: what persistent node ids cost per request.`,
  options: { 'state-file': { type: 'boolean' } },
  maxPositionals: 3,
});
const N = cli.wholeNumber('FILES', cli.positionals[0], 5000, 1, 10_000_000);
const ROUNDS = cli.wholeNumber('ROUNDS', cli.positionals[1], 3, 1, 1000);
const BASE = cli.positionals[2] ?? os.tmpdir();
const ctx = { uid: 0, gid: 0, pid: process.pid, unique: 1n };
const log = pino({ level: 'silent' });
const O_WRONLY = 0o1, O_CREAT = 0o100, O_EXCL = 0o200;
const payload = Buffer.alloc(100, 0x78);
const now = (): number => performance.now();
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
/** ms spent per request kind, in one round */
type Round = Record<string, number>;

const STATE = cli.values['state-file'] === true;

function makeFs(root: string): PassthroughFs {
  return new PassthroughFs({
    root, fdBudget: 4 * N + 64, reopen: 'auto', key: ephemeralKey(), cache: 'auto', xattr: true, creds: true, log,
    stateFile: STATE ? `${root}.state` : null,
  });
}

async function protocolRounds(root: string): Promise<Round[]> {
  const srv = new ProtocolServer(makeFs(root), {}, log);
  const ALL = (1n << 43n) - 1n;
  await srv.handle(encodeRequest({ opcode: Op.INIT, unique: 1n },
    A.encodeStruct(A.InitIn, { major: 7, minor: 45, max_readahead: 131072, flags: Number(ALL & 0xffffffffn), flags2: Number(ALL >> 32n) })));
  let unique = 10n;
  // a step builds its request untimed; only handle() is timed
  const call = (opcode: number, nodeid: bigint, ...parts: Buffer[]): Buffer => encodeRequest({ opcode, unique: ++unique, nodeid }, ...parts);
  const errnoOf = (reply: Buffer | null): number => (reply ? -reply.readInt32LE(4) : 0);
  const z = (s: string): Buffer => Buffer.from(`${s}\0`);
  const mk = await srv.handle(call(Op.MKDIR, 1n, A.encodeStruct(A.MkdirIn, { mode: 0o755, umask: 0o22 }), z('mix')));
  if (!mk || errnoOf(mk)) throw new Error(`MKDIR failed: errno ${errnoOf(mk)}`);
  const dir = mk.readBigUInt64LE(16);
  const es = A.EntryOut.SIZE;
  const names = Array.from({ length: N }, (_, i) => z(`file-${i}`));
  const createIn = A.encodeStruct(A.CreateIn, { flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o100644, umask: 0o22 });
  const rounds: Round[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t: Round = {};
    /** want: the errno the reply must carry (0 = success), null: no check (FORGET has no reply) */
    const step = async (k: string, build: () => Buffer, want: number | null = 0): Promise<Buffer | null> => {
      const req = build();
      const a = now();
      const reply = await srv.handle(req);
      t[k] = (t[k] ?? 0) + now() - a;
      if (want !== null && errnoOf(reply) !== want) throw new Error(`${k}: errno ${errnoOf(reply)}, wanted ${want}`);
      return reply;
    };
    const ids: bigint[] = [];
    for (const n of names) {
      await step('LOOKUP (none)', () => call(Op.LOOKUP, dir, n), 2);
      const c = (await step('CREATE', () => call(Op.CREATE, dir, createIn, n)))!;
      const id = c.readBigUInt64LE(16), fh = c.readBigUInt64LE(16 + es);
      await step('GETXATTR (none)', () => call(Op.GETXATTR, id, A.encodeStruct(A.GetxattrIn, { size: 0 }), z('security.capability')), 61);
      await step('WRITE 100 B', () => call(Op.WRITE, id, A.encodeStruct(A.WriteIn, { fh, offset: 0n, size: payload.length }), payload));
      await step('FLUSH', () => call(Op.FLUSH, id, A.encodeStruct(A.FlushIn, { fh })));
      await step('RELEASE', () => call(Op.RELEASE, id, A.encodeStruct(A.ReleaseIn, { fh, flags: O_WRONLY })));
      ids.push(id);
    }
    for (const id of ids) await step('STATX', () => call(Op.STATX, id, A.encodeStruct(A.StatxIn, { sx_mask: 0xfff })));
    for (let i = 0; i < N; i++) {
      await step('UNLINK', () => call(Op.UNLINK, dir, names[i]!));
      await step('FORGET', () => call(Op.FORGET, ids[i]!, A.encodeStruct(A.ForgetIn, { nlookup: 1n })), null);
    }
    rounds.push(t);
  }
  await srv.fs.destroy();
  return rounds;
}

async function coreRounds(root: string): Promise<Round[]> {
  const pfs = makeFs(root);
  const d = await pfs.mkdir(ctx, 1n, Buffer.from('mix'), 0o755, 0o22);
  const names = Array.from({ length: N }, (_, i) => Buffer.from(`file-${i}`));
  const rounds: Round[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t: Round = {};
    const step = async <T>(k: string, fn: () => Promise<T>): Promise<T> => {
      const a = now();
      try {
        return await fn();
      } finally {
        t[k] = (t[k] ?? 0) + now() - a;
      }
    };
    const ents: bigint[] = [];
    for (const n of names) {
      await step('LOOKUP (none)', () => pfs.lookup(ctx, d.nodeid, n).then((e) => { if (!(e instanceof FsError)) throw new Error('found'); }, () => null));
      const c = await step('CREATE', () => pfs.create(ctx, d.nodeid, n, 0o100644, O_WRONLY | O_CREAT | O_EXCL, 0o22));
      await step('GETXATTR (none)', () => pfs.getxattr(ctx, c.entry.nodeid, Buffer.from('security.capability'), 0).catch(() => null));
      await step('WRITE 100 B', () => pfs.write(ctx, c.entry.nodeid, c.open.fh, 0, payload, 0));
      await step('FLUSH', () => pfs.flush(ctx, c.entry.nodeid, c.open.fh, 0n));
      await step('RELEASE', () => pfs.release(ctx, c.entry.nodeid, c.open.fh, O_WRONLY, 0n, false));
      ents.push(c.entry.nodeid);
    }
    for (const id of ents) await step('STATX', () => pfs.statx(ctx, id, undefined, 0, 0xfff));
    for (let i = 0; i < N; i++) {
      await step('UNLINK', () => pfs.unlink(ctx, d.nodeid, names[i]!));
      await step('FORGET', async () => pfs.forget(ctx, ents[i]!, 1n));
    }
    rounds.push(t);
  }
  await pfs.destroy();
  return rounds;
}

const top = fs.mkdtempSync(path.join(BASE, 'hfs-bench-requests-'));
try {
  fs.mkdirSync(path.join(top, 'p'));
  fs.mkdirSync(path.join(top, 'c'));
  const proto = await protocolRounds(path.join(top, 'p'));
  const core = await coreRounds(path.join(top, 'c'));
  const steps = Object.keys(proto[0]!);
  const us = (rounds: Round[], k: string): number => (median(rounds.map((t) => t[k]!)) * 1000) / N;
  console.log(`handlefs request mix of create+stat+unlink, in process, ${N} files, median of ${ROUNDS} rounds, ${os.cpus().length} cpus, node ${process.version}, ${BASE}${STATE ? ', with a state file' : ''}`);
  console.log('| request | through the protocol server (us) | filesystem core only (us) |');
  console.log('|---|---:|---:|');
  let tp = 0, tc = 0;
  for (const k of steps) {
    tp += us(proto, k);
    tc += us(core, k);
    console.log(`| ${k} | ${us(proto, k).toFixed(1)} | ${us(core, k).toFixed(1)} |`);
  }
  console.log(`| per file (${steps.length} requests) | ${tp.toFixed(1)} | ${tc.toFixed(1)} |`);
} finally {
  fs.rmSync(top, { recursive: true, force: true });
}
