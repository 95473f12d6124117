/**
 * The ProtocolServer of a serving thread other than the owner (--threads): localOps, DECLINE
 * thrown by its filesystem, and adopt() of what the owner's INIT settled. Requests are built with
 * the codec, as the kernel sends them; no mount.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { DECLINE, E, FsError } from '../../src/errors.js';
import { DefaultFileSystem } from '../../src/fs/filesystem.js';
import type { FsCounters } from '../../src/fs/services.js';
import { SHARED_LOCK_OWNERS, SharedFileTable, SharedRemovalGate } from '../../src/fs/shared-files.js';
import { threadFs } from '../../src/fs/thread-fs.js';
import type { Context, InitOptions } from '../../src/fs/types.js';
import { BmapIn, FlushIn, ForgetIn, FsyncIn, GetattrIn, InitIn, IoctlIn, OutHeader, ReadIn, ReleaseIn, WriteIn, encodeStruct } from '../../src/fuse/abi.js';
import { cstr, encodeRequest } from '../../src/fuse/codec.js';
import * as F from '../../src/fuse/flags.js';
import { Op, enosysOpcodes } from '../../src/fuse/opcodes.js';
import { DECLINED, ProtocolServer, type ProtocolOptions } from '../../src/fuse/protocol-server.js';
import { tmpdir } from '../helpers/fs-fixture.js';

const silent = pino({ level: 'silent' });
const LOCAL = new Set([Op.READ, Op.WRITE, Op.FSYNC, Op.FLUSH]);

/** A filesystem that records what it is asked; its read and write decline when told to. */
class RecordingFs extends DefaultFileSystem {
  calls: string[] = [];
  initOpts: InitOptions | null = null;
  decline = false;
  override async init(o: InitOptions): Promise<void> {
    this.initOpts = o;
  }
  override async lookup(): Promise<never> {
    this.calls.push('lookup');
    throw new FsError(E.ENOENT);
  }
  override async read(_c: Context, _n: bigint, fh: bigint, off: number, size: number): Promise<Buffer> {
    this.calls.push(`read ${fh}`);
    if (this.decline) throw DECLINE;
    if (fh === 13n) throw new FsError(E.EIO);
    return Buffer.from('0123456789').subarray(off, off + size);
  }
  override async write(_c: Context, _n: bigint, fh: bigint, _off: number, d: Buffer): Promise<number> {
    this.calls.push(`write ${fh}`);
    if (this.decline) throw DECLINE;
    return d.length;
  }
}

let unique = 100n;
const req = (opcode: number, nodeid: bigint, ...parts: Buffer[]): Buffer => encodeRequest({ opcode, unique: ++unique, nodeid, uid: 1, gid: 2, pid: 3 }, ...parts);
const readReq = (fh: bigint, offset: bigint, size: number, nodeid = 5n): Buffer => req(Op.READ, nodeid, encodeStruct(ReadIn, { fh, offset, size }));
const initReq = (flags: bigint): Buffer => req(Op.INIT, 0n, encodeStruct(InitIn, {
  major: 7, minor: 45, max_readahead: 65536, flags: Number(flags & 0xffffffffn), flags2: Number(flags >> 32n),
}));

/** [errno, payload] of a reply (not DECLINED). */
function parse(b: Buffer | null): [number, Buffer] {
  expect(b).not.toBeNull();
  expect(b).not.toBe(DECLINED);
  expect(b!.readUInt32LE(0)).toBe(b!.length);
  return [-b!.readInt32LE(4) | 0, b!.subarray(OutHeader.SIZE)];
}

/** An owner that answered INIT (with the kernel offering `flags`), and a thread's server beside it. */
async function pair(flags = F.FUSE_ASYNC_READ | F.FUSE_HANDLE_KILLPRIV_V2 | F.FUSE_MAX_PAGES | F.FUSE_INIT_EXT, opts: Partial<ProtocolOptions> = {}) {
  const ownerFs = new RecordingFs();
  const owner = new ProtocolServer(ownerFs, opts, silent);
  expect(owner.negotiatedState()).toBeNull();
  expect(parse(await owner.handle(initReq(flags)))[0]).toBe(0);
  const threadFsStub = new RecordingFs();
  const thread = new ProtocolServer(threadFsStub, { ...opts, localOps: LOCAL }, silent);
  return { owner, ownerFs, thread, fs: threadFsStub };
}

describe('localOps', () => {
  it('a request of any other opcode is DECLINED (by identity), before INIT too, and its filesystem is not asked', async () => {
    const { thread, fs } = await pair();
    for (const b of [
      req(Op.LOOKUP, 1n, cstr('a')),
      req(Op.GETATTR, 5n, encodeStruct(GetattrIn, {})),
      req(Op.RELEASE, 5n, encodeStruct(ReleaseIn, { fh: 1n })),
      req(Op.FORGET, 5n, encodeStruct(ForgetIn, { nlookup: 1n })),
      initReq(0n),
      req(9999, 1n),
    ]) expect(await thread.handle(b)).toBe(DECLINED);
    expect(fs.calls).toEqual([]);
    expect(fs.initOpts).toBeNull();
    expect(thread.negotiated).toBeNull();
    await thread.adopt((await pair()).owner.negotiatedState()!);
    expect(await thread.handle(req(Op.LOOKUP, 1n, cstr('a')))).toBe(DECLINED);
    expect(fs.calls).toEqual([]);
  });

  it('DECLINED is not any empty reply: a server without localOps answers the same requests', async () => {
    const { owner, ownerFs } = await pair();
    const [err] = parse(await owner.handle(req(Op.LOOKUP, 1n, cstr('a'))));
    expect(err).toBe(E.ENOENT);
    expect(parse(await owner.handle(req(9999, 1n)))[0]).toBe(E.ENOSYS);
    expect(ownerFs.calls).toEqual(['lookup']);
  });

  it('the opcodes answered ENOSYS without a handler (IOCTL, BMAP, POLL) are answered so by a thread that serves them, as by the owner; none with a handler or without a reply is among them', async () => {
    const stubs = enosysOpcodes();
    expect(stubs).toEqual(expect.arrayContaining([Op.IOCTL, Op.BMAP, Op.POLL]));
    for (const op of [Op.LOOKUP, Op.GETATTR, Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.INIT, Op.RELEASE]) expect(stubs).not.toContain(op);
    const { owner, ownerFs } = await pair();
    const thread = new ProtocolServer(new RecordingFs(), { localOps: new Set(stubs) }, silent);
    await thread.adopt(owner.negotiatedState()!);
    for (const [op, body] of [[Op.IOCTL, encodeStruct(IoctlIn, { fh: 1n, cmd: 0x5401, outSize: 64 })], [Op.BMAP, encodeStruct(BmapIn, { block: 0n, blocksize: 4096 })]] as const) {
      expect(parse(await thread.handle(req(op, 5n, body)))[0]).toBe(E.ENOSYS);
      expect(parse(await owner.handle(req(op, 5n, body)))[0]).toBe(E.ENOSYS);
    }
    expect(ownerFs.calls).toEqual([]);
  });

  it('a local opcode before adopt (no INIT on this server) is EIO, not DECLINED', async () => {
    const { thread, fs } = await pair();
    expect(parse(await thread.handle(readReq(1n, 0n, 4)))[0]).toBe(E.EIO);
    expect(fs.calls).toEqual([]);
  });
});

describe('adopt', () => {
  it('negotiatedState is what INIT settled; adopt takes it over and tells the filesystem what INIT told the owner\'s', async () => {
    const { owner, ownerFs, thread, fs } = await pair();
    const state = owner.negotiatedState()!;
    expect(state).toEqual({ minor: owner.negotiated!.minor, flags: owner.negotiated!.flags, maxReadahead: owner.negotiated!.maxReadahead });
    expect(state.maxReadahead).toBe(65536);
    expect(state.flags & F.FUSE_HANDLE_KILLPRIV_V2).toBe(F.FUSE_HANDLE_KILLPRIV_V2);
    await thread.adopt(state);
    expect(thread.negotiated).toEqual(owner.negotiated);
    expect(thread.conn).toEqual(owner.conn);
    expect(fs.initOpts).toEqual(ownerFs.initOpts);
    expect(fs.initOpts!.killPrivV2).toBe(true);
    // adopting a state without killpriv_v2 says so too
    const other = await pair(F.FUSE_ASYNC_READ);
    const t2 = new ProtocolServer(new RecordingFs(), { localOps: LOCAL }, silent);
    await t2.adopt(other.owner.negotiatedState()!);
    expect(t2.negotiated!.flags).toBe(other.owner.negotiated!.flags);
  });

  it('after adopt, READ and WRITE are served without an INIT of this server', async () => {
    const { owner, thread, fs } = await pair();
    await thread.adopt(owner.negotiatedState()!);
    expect(parse(await thread.handle(readReq(1n, 2n, 4)))).toEqual([0, Buffer.from('2345')]);
    const [err, p] = parse(await thread.handle(req(Op.WRITE, 5n, encodeStruct(WriteIn, { fh: 3n, offset: 0n, size: 5 }), Buffer.from('hello'))));
    expect(err).toBe(0);
    expect(p.readUInt32LE(0)).toBe(5);
    // an error of the filesystem is answered here, as the owner would
    expect(parse(await thread.handle(readReq(13n, 0n, 4)))[0]).toBe(E.EIO);
    expect(fs.calls).toEqual(['read 1', 'write 3', 'read 13']);
  });

  it('a filesystem that throws DECLINE in read or write makes the request DECLINED', async () => {
    const { owner, thread, fs } = await pair();
    await thread.adopt(owner.negotiatedState()!);
    fs.decline = true;
    expect(await thread.handle(readReq(1n, 0n, 4))).toBe(DECLINED);
    expect(await thread.handle(req(Op.WRITE, 5n, encodeStruct(WriteIn, { fh: 3n, offset: 0n, size: 2 }), Buffer.from('hi')))).toBe(DECLINED);
    expect(fs.calls).toEqual(['read 1', 'write 3']);
    // declining is not a failure of the server: the next request is served
    fs.decline = false;
    expect(parse(await thread.handle(readReq(1n, 0n, 3)))).toEqual([0, Buffer.from('012')]);
  });
});

describe('a serving thread over threadFs and a published fd', () => {
  const dirs: string[] = [];
  const fds: number[] = [];
  afterEach(() => {
    while (fds.length) fs.closeSync(fds.pop()!);
    while (dirs.length) fs.rmSync(dirs.pop()!, { recursive: true, force: true });
  });

  it('serves READ, WRITE, FSYNC and FLUSH of the published fh; declines the rest', async () => {
    const dir = tmpdir('hfs-threads-');
    dirs.push(dir);
    const p = path.join(dir, 'f');
    fs.writeFileSync(p, 'abcdef');
    const fd = fs.openSync(p, 'r+');
    fds.push(fd);
    const table = SharedFileTable.create(8);
    table.publish(4n, 5n, fd, 0, Number(fs.fstatSync(fd).dev));
    const counters: FsCounters = {
      reopenByPath: 0, reopenByHandle: 0, estale: 0, sealFailures: 0, resurrected: 0, placeChecks: 0, nowaitRefusals: 0,
      forgetUnknown: 0, forgetUnderflow: 0, forgetAfterCrash: 0,
    };
    const t = threadFs({ files: table, inodes: SharedFileTable.create(8), removals: SharedRemovalGate.create() }, counters, { attrTimeoutMs: 1000, rootPath: null, plainXattrs: false, rootMount: 0n, handleFlags: 0 });
    const thread = new ProtocolServer(t.fs, { localOps: LOCAL }, silent);
    const { owner } = await pair();
    await thread.adopt(owner.negotiatedState()!);

    expect(parse(await thread.handle(readReq(4n, 1n, 3)))).toEqual([0, Buffer.from('bcd')]);
    expect(parse(await thread.handle(readReq(4n, 4n, 100)))).toEqual([0, Buffer.from('ef')]);
    expect(parse(await thread.handle(req(Op.WRITE, 5n, encodeStruct(WriteIn, { fh: 4n, offset: 6n, size: 3 }), Buffer.from('ghi'))))[0]).toBe(0);
    expect(fs.readFileSync(p, 'utf8')).toBe('abcdefghi');
    expect(parse(await thread.handle(req(Op.FSYNC, 5n, encodeStruct(FsyncIn, { fh: 4n, fsync_flags: F.FUSE_FSYNC_FDATASYNC }))))[0]).toBe(0);
    expect(parse(await thread.handle(req(Op.FLUSH, 5n, encodeStruct(FlushIn, { fh: 4n, lock_owner: 9n }))))[0]).toBe(0);
    expect(t.counters).toEqual({ served: 5, declined: 0, negativeLookups: 0, positiveLookups: 0, removals: 0 });

    // not this fh, not this node, a FLUSH that must drop locks, not a local opcode: the owner's
    expect(await thread.handle(readReq(5n, 0n, 3))).toBe(DECLINED);
    expect(await thread.handle(readReq(4n, 0n, 3, 6n))).toBe(DECLINED);
    table.mark(4n, SHARED_LOCK_OWNERS, true);
    expect(await thread.handle(req(Op.FLUSH, 5n, encodeStruct(FlushIn, { fh: 4n, lock_owner: 9n })))).toBe(DECLINED);
    expect(await thread.handle(req(Op.RELEASE, 5n, encodeStruct(ReleaseIn, { fh: 4n })))).toBe(DECLINED);
    expect(t.counters).toEqual({ served: 5, declined: 3, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    expect(table.borrowers(4n)).toBe(0);
  });
});
