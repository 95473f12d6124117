/**
 * Bounded fuzz of ProtocolServer.handle(): random bytes, truncated and lying-length requests,
 * mutated well-formed requests for every opcode. handle() must never throw or reject, and every
 * reply must be well-formed (header len === buffer length, error in (-512, 0], unique echoed).
 * Seeded PRNG and fixed counts: deterministic and quick.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FsError } from '../../src/errors.js';
import { DefaultFileSystem } from '../../src/fs/filesystem.js';
import type { AttrReply, Context, CreateOut, DirEntry, Entry, OpenOut, StatfsOut, XattrReply, FileLock } from '../../src/fs/types.js';
import { encodeStruct, InHeader, InitIn, OutHeader } from '../../src/fuse/abi.js';
import { encodeRequest } from '../../src/fuse/codec.js';
import { Op, OPCODES } from '../../src/fuse/opcodes.js';
import { ProtocolServer } from '../../src/fuse/protocol-server.js';
import { mulberry32 } from '../helpers/prng.js';

const silent = pino({ level: 'silent' });

const attr = (ino: bigint) => ({
  ino, size: 1n, blocks: 0n, atime: { sec: 0n, nsec: 0 }, mtime: { sec: 0n, nsec: 0 }, ctime: { sec: 0n, nsec: 0 },
  btime: null, mode: 0o40755, nlink: 2, uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, blksize: 4096, attributes: 0n,
});

/** Answers plausibly, fails with an errno sometimes, and sometimes returns garbage (a buggy fs). */
class FuzzFs extends DefaultFileSystem {
  constructor(private readonly rnd: () => number) { super(); }
  private maybe<T>(v: T): T {
    const x = this.rnd();
    if (x < 0.15) throw new FsError(1 + Math.floor(this.rnd() * 130));
    if (x < 0.2) throw new Error('bug');
    if (x < 0.25) return { nonsense: true } as unknown as T;
    if (x < 0.27) throw Object.assign(new Error('node'), { code: 'ENOSPC', errno: -28 });
    return v;
  }
  private entry(): Entry { return { nodeid: 5n, generation: 1n, attr: attr(5n), entryTimeoutMs: this.rnd() * 1e4, attrTimeoutMs: -1 }; }
  override async lookup(): Promise<Entry> { return this.maybe(this.entry()); }
  override async mkdir(): Promise<Entry> { return this.maybe(this.entry()); }
  override async mknod(): Promise<Entry> { return this.maybe(this.entry()); }
  override async symlink(): Promise<Entry> { return this.maybe(this.entry()); }
  override async link(): Promise<Entry> { return this.maybe(this.entry()); }
  override async getattr(): Promise<AttrReply> { return this.maybe({ attr: attr(1n), attrTimeoutMs: 1 }); }
  override async setattr(): Promise<AttrReply> { return this.maybe({ attr: attr(1n), attrTimeoutMs: 1 }); }
  override async statx(): Promise<AttrReply> { return this.maybe({ attr: attr(1n), attrTimeoutMs: 1 }); }
  override async readlink(): Promise<Buffer> { return this.maybe(Buffer.from('target')); }
  override async open(): Promise<OpenOut> { return this.maybe({ fh: 1n, openFlags: 0xff, backingId: 3 }); }
  override async opendir(): Promise<OpenOut> { return this.maybe({ fh: 1n, openFlags: 0 }); }
  override async create(): Promise<CreateOut> { return this.maybe({ entry: this.entry(), open: { fh: 2n, openFlags: 0 } }); }
  override async tmpfile(): Promise<CreateOut> { return this.maybe({ entry: this.entry(), open: { fh: 2n, openFlags: 0 } }); }
  override async read(_c: Context, _n: bigint, _f: bigint, _o: number, size: number): Promise<Buffer> {
    return this.maybe(Buffer.alloc(Math.min(size, Math.floor(this.rnd() * 3 * Math.min(size + 1, 5000))), 0x61));
  }
  override async write(_c: Context, _n: bigint, _f: bigint, _o: number, d: Buffer): Promise<number> { return this.maybe(d.length); }
  override async flush(): Promise<void> { return this.maybe(undefined); }
  override async fsync(): Promise<void> { return this.maybe(undefined); }
  override async statfs(): Promise<StatfsOut> {
    return this.maybe({ blocks: 1n, bfree: 1n, bavail: 1n, files: 1n, ffree: 1n, bsize: 4096, namelen: 255, frsize: 4096 });
  }
  override async getxattr(_c: Context, _n: bigint, _k: Buffer, size: number): Promise<XattrReply> {
    return this.maybe(this.rnd() < 0.5 ? { size: 40 } : { value: Buffer.alloc(Math.floor(this.rnd() * 80)) });
  }
  override async listxattr(_c: Context, _n: bigint, size: number): Promise<XattrReply> {
    return this.maybe(size === 0 ? { size: 10 } : { value: Buffer.from('user.a\0') });
  }
  override async readdir(_c: Context, _n: bigint, _f: bigint, _o: bigint, _s: number, add: (e: DirEntry) => boolean): Promise<void> {
    for (let i = 0; i < 50; i++) if (!add({ ino: BigInt(i), off: BigInt(i + 1), type: 4, name: Buffer.alloc(1 + (i % 300), 0x62) })) break;
    return this.maybe(undefined);
  }
  override async readdirplus(_c: Context, _n: bigint, _f: bigint, _o: bigint, _s: number, add: (e: DirEntry, en: Entry | null) => boolean): Promise<void> {
    for (let i = 0; i < 50; i++) if (!add({ ino: BigInt(i), off: BigInt(i + 1), type: 4, name: Buffer.alloc(1 + (i % 40), 0x63) }, i % 3 ? this.entry() : null)) break;
    return this.maybe(undefined);
  }
  override async getlk(_c: Context, _n: bigint, _f: bigint, _o: bigint, l: FileLock): Promise<FileLock> { return this.maybe(l); }
  override async lseek(_c: Context, _n: bigint, _f: bigint, o: bigint): Promise<bigint> { return this.maybe(o); }
  override async copyFileRange(): Promise<number> { return this.maybe(Math.floor(this.rnd() * 1e6)); }
  override forget(): void {
    if (this.rnd() < 0.1) throw new Error('forget must not throw, but a buggy fs might');
  }
}

const OPS = OPCODES.flatMap((r, i) => (r ? [i] : [])).concat([0, 7, 19, 54, 4096, 0xffffffff]);

function randBytes(rnd: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/** A plausible request for `opcode`: its struct (random fields), 0-2 names, some data. */
function plausible(rnd: () => number, opcode: number, unique: bigint): Buffer {
  const row = opcode < OPCODES.length ? OPCODES[opcode] : undefined;
  const parts: Buffer[] = [];
  if (row?.in) {
    const s = randBytes(rnd, row.in.SIZE);
    // keep sizes small most of the time so that handlers get past their checks
    if (rnd() < 0.7 && row.in.SIZE >= 24) s.writeUInt32LE(Math.floor(rnd() * 200), 16);
    if (rnd() < 0.5 && row.in.SIZE >= 16) s.fill(0, 8, 16);
    parts.push(s);
  }
  for (let i = 0; i < (row?.names ?? 0); i++) parts.push(Buffer.from(`n${i}`), Buffer.alloc(1));
  if (rnd() < 0.5) parts.push(randBytes(rnd, Math.floor(rnd() * 300)));
  const b = encodeRequest({ opcode, unique, nodeid: BigInt(Math.floor(rnd() * 5)) }, ...parts);
  if (opcode === Op.BATCH_FORGET && rnd() < 0.5) b.writeUInt32LE(Math.floor(rnd() * 30), InHeader.SIZE);
  return b;
}

function mutate(rnd: () => number, b: Buffer): Buffer {
  const k = rnd();
  if (k < 0.2) return b.subarray(0, Math.floor(rnd() * b.length)); // truncated (header len now lies)
  if (k < 0.35) { // lying header length
    const c = Buffer.from(b);
    if (c.length >= 4) c.writeUInt32LE(Math.floor(rnd() * 2 ** 32), 0);
    return c;
  }
  if (k < 0.45) { // consistent length, but truncated body
    const c = Buffer.from(b.subarray(0, Math.max(40, Math.floor(rnd() * b.length))));
    if (c.length >= 40) c.writeUInt32LE(c.length, 0);
    return c;
  }
  if (k < 0.55 && b.length >= 40) { // bogus extension length
    const c = Buffer.from(b);
    c.writeUInt16LE(Math.floor(rnd() * 64), InHeader.total_extlen);
    return c;
  }
  if (k < 0.75) { // flip bytes after the header
    const c = Buffer.from(b);
    for (let i = 0; i < 4 && c.length > 40; i++) c[40 + Math.floor(rnd() * (c.length - 40))] = Math.floor(rnd() * 256);
    return c;
  }
  return b;
}

const NO_REPLY = new Set<number>([Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.NOTIFY_REPLY]);

async function check(srv: ProtocolServer, req: Buffer): Promise<void> {
  let out: Buffer | null;
  try {
    out = await srv.handle(req);
  } catch (e) {
    throw new Error(`handle() rejected on ${req.toString('hex').slice(0, 200)}: ${String(e)}`);
  }
  if (out === null) return;
  expect(Buffer.isBuffer(out)).toBe(true);
  expect(out.length).toBeGreaterThanOrEqual(OutHeader.SIZE);
  expect(out.readUInt32LE(0)).toBe(out.length);
  const err = out.readInt32LE(4);
  expect(err).toBeLessThanOrEqual(0);
  expect(err).toBeGreaterThan(-512);
  if (err !== 0) expect(out.length).toBe(OutHeader.SIZE);
  expect(req.length).toBeGreaterThanOrEqual(16);
  expect(out.readBigUInt64LE(8)).toBe(req.readBigUInt64LE(8));
  if (req.length >= 8) expect(NO_REPLY.has(req.readUInt32LE(4))).toBe(false);
}

function initReq(unique: bigint, minor = 45): Buffer {
  return encodeRequest({ opcode: Op.INIT, unique }, encodeStruct(InitIn, { major: 7, minor, flags: 0xffffffff, flags2: 0xffffffff }));
}

describe('ProtocolServer fuzz', () => {
  it('random bytes before and after INIT', async () => {
    const rnd = mulberry32(1);
    const srv = new ProtocolServer(new FuzzFs(rnd), {}, silent);
    for (let i = 0; i < 1500; i++) {
      if (i === 700) expect((await srv.handle(initReq(1n)))!.readInt32LE(4)).toBe(0);
      const n = rnd() < 0.3 ? Math.floor(rnd() * 48) : Math.floor(rnd() * 400);
      const b = randBytes(rnd, n);
      if (n >= 8 && rnd() < 0.7) b.writeUInt32LE(OPS[Math.floor(rnd() * OPS.length)]!, 4);
      if (n >= 4 && rnd() < 0.5) b.writeUInt32LE(n, 0);
      await check(srv, b);
    }
  });

  it('plausible requests for every opcode, mutated', async () => {
    for (const [seed, minor, opts] of [[2, 45, {}], [3, 22, { writeback: true }], [4, 36, { passthrough: true, maxWrite: 4096 }]] as const) {
      const rnd = mulberry32(seed);
      const srv = new ProtocolServer(new FuzzFs(rnd), opts, silent);
      expect((await srv.handle(initReq(1n, minor)))!.readInt32LE(4)).toBe(0);
      for (let i = 0; i < 2500; i++) {
        const op = OPS[Math.floor(rnd() * OPS.length)]!;
        if (op === Op.DESTROY || op === Op.INIT) continue;
        const req = plausible(rnd, op, BigInt(i + 2));
        await check(srv, rnd() < 0.5 ? mutate(rnd, req) : req);
      }
    }
  });

  it('concurrent requests with interrupts and a DESTROY in the middle', async () => {
    const rnd = mulberry32(5);
    const srv = new ProtocolServer(new FuzzFs(rnd), {}, silent);
    await srv.handle(initReq(1n));
    const pending: Array<Promise<void>> = [];
    for (let i = 0; i < 600; i++) {
      const op = OPS[Math.floor(rnd() * OPS.length)]!;
      if (op === Op.INIT) continue;
      if (op === Op.DESTROY && i % 5 === 0) pending.push(check(srv, initReq(BigInt(i + 10_000))));
      pending.push(check(srv, mutate(rnd, plausible(rnd, op, BigInt(i + 2)))));
    }
    await Promise.all(pending);
  });

  it('all struct sizes are exercised by the table', () => {
    const used = new Set(OPCODES.flatMap((r) => (r?.in ? [r.in.NAME] : [])));
    for (const n of ['ReadIn', 'WriteIn', 'LkIn', 'SetattrIn', 'CopyFileRangeIn', 'StatxIn']) expect(used.has(n)).toBe(true);
  });
});
