import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { E, failure, FsError } from '../../src/errors.js';
import { DefaultFileSystem } from '../../src/fs/filesystem.js';
import type { AttrReply, Context, CreateOut, DeviceNumber, DirEntry, Entry, FileLock, InitOptions, OpenOut, StatfsOut, XattrReply } from '../../src/fs/types.js';
import {
  AccessIn, AttrOut, CreateIn, MknodIn, encodeStruct, EntryOut, FileLock as FileLockS, ForgetIn, ForgetOne, BatchForgetIn, GetattrIn,
  GetxattrIn, InitIn, InitOut, InterruptIn, Kstatfs, LkIn, OpenIn, OpenOut as OpenOutS, OutHeader, ReadIn, readStruct,
  Rename2In, SetxattrIn, StatxIn, StatxOut, WriteIn, CopyFileRangeIn, LseekIn, FsyncIn, ReleaseIn, Statx,
} from '../../src/fuse/abi.js';
import { cstr, encodeRequest } from '../../src/fuse/codec.js';
import * as F from '../../src/fuse/flags.js';
import { Op } from '../../src/fuse/opcodes.js';
import { ProtocolServer, type ProtocolOptions } from '../../src/fuse/protocol-server.js';
import { encodeDev32 } from '../../src/sys/stat.js';

const silent = pino({ level: 'silent' });

const attr = (ino: bigint, mode = 0o100644) => ({
  ino, size: 5n, blocks: 1n, atime: { sec: 1n, nsec: 2 }, mtime: { sec: 3n, nsec: 4 }, ctime: { sec: 5n, nsec: 6 },
  btime: { sec: 7n, nsec: 8 }, mode, nlink: 1, uid: 1000, gid: 1000, rdevMajor: 0, rdevMinor: 0, blksize: 4096, attributes: 0n,
});
const entry = (nodeid: bigint): Entry => ({ nodeid, generation: 3n, attr: attr(nodeid + 100n), entryTimeoutMs: 1500, attrTimeoutMs: 250 });

/** A stub filesystem: a root with files a, b, c; records calls. */
class StubFs extends DefaultFileSystem {
  calls: Array<[string, ...unknown[]]> = [];
  initOpts?: InitOptions;
  override async init(o: InitOptions): Promise<void> { this.initOpts = o; }
  override async destroy(): Promise<void> { this.calls.push(['destroy']); }
  override async lookup(_c: Context, parent: bigint, name: Buffer): Promise<Entry | FsError> {
    this.calls.push(['lookup', parent, name.toString()]);
    if (name.toString() === 'gone') return failure(E.ENOENT);
    if (name.toString() === 'denied') return failure(E.EACCES);
    if (name.toString() === 'boom') throw new Error('a bug');
    if (name.toString() === 'nodeerr') throw Object.assign(new Error('x'), { code: 'EACCES', errno: -13 });
    if (!['a', 'b', 'c'].includes(name.toString())) throw new FsError(E.ENOENT);
    return entry(10n + BigInt(name[0]! - 0x61));
  }
  override forget(_c: Context, n: bigint, k: bigint): void { this.calls.push(['forget', n, k]); }
  override async mknod(_c: Context, p: bigint, name: Buffer, mode: number, rdev: DeviceNumber, umask: number): Promise<Entry> {
    this.calls.push(['mknod', p, name.toString(), mode, rdev, umask]);
    return entry(20n);
  }
  override async getattr(_c: Context, n: bigint, fh?: bigint): Promise<AttrReply> {
    this.calls.push(['getattr', n, fh]);
    return { attr: attr(n), attrTimeoutMs: 2000 };
  }
  override async statx(_c: Context, n: bigint, fh: bigint | undefined, f: number, m: number): Promise<AttrReply> {
    this.calls.push(['statx', n, fh, f, m]);
    return { attr: attr(n), attrTimeoutMs: 1000 };
  }
  override async open(_c: Context, n: bigint, f: number, kill?: boolean): Promise<OpenOut> {
    this.calls.push(kill ? ['open', n, f, 'kill-suidgid'] : ['open', n, f]);
    return { fh: 99n, openFlags: F.FOPEN_KEEP_CACHE | F.FOPEN_PASSTHROUGH, backingId: 7 };
  }
  override async opendir(_c: Context, _n: bigint, _f: number): Promise<OpenOut> { return { fh: 5n, openFlags: 0 }; }
  override async read(_c: Context, _n: bigint, _fh: bigint, off: number, size: number): Promise<Buffer> {
    return Buffer.from('0123456789').subarray(off, off + size);
  }
  override async write(_c: Context, _n: bigint, fh: bigint, off: number, d: Buffer, w: number): Promise<number> {
    this.calls.push(['write', fh, off, d.toString(), w]);
    return d.length;
  }
  override async readdir(_c: Context, _n: bigint, _fh: bigint, off: bigint, _s: number, add: (e: DirEntry) => boolean): Promise<void> {
    const names = ['.', '..', 'a', 'bb', 'ccccccccc'];
    for (let i = Number(off); i < names.length; i++) {
      if (!add({ ino: BigInt(i + 1), off: BigInt(i + 1), type: 4, name: Buffer.from(names[i]!) })) break;
    }
  }
  override async readdirplus(_c: Context, _n: bigint, _fh: bigint, off: bigint, _s: number, add: (e: DirEntry, en: Entry | null) => boolean): Promise<void> {
    const names = ['.', 'a', 'b'];
    for (let i = Number(off); i < names.length; i++) {
      const en = i === 0 ? null : entry(BigInt(20 + i));
      if (!add({ ino: BigInt(i + 1), off: BigInt(i + 1), type: 8, name: Buffer.from(names[i]!) }, en)) {
        this.calls.push(['undo', i]);
        break;
      }
      this.calls.push(['added', i]);
    }
  }
  override async getxattr(_c: Context, _n: bigint, name: Buffer, size: number): Promise<XattrReply | FsError> {
    if (name.toString() === 'user.none') return failure(E.ENODATA);
    const v = Buffer.from(`value-of-${name}`);
    return size === 0 ? { size: v.length } : { value: v };
  }
  override async listxattr(_c: Context, _n: bigint, _size: number): Promise<XattrReply> {
    return { value: Buffer.from('user.a\0user.b\0') };
  }
  override async setxattr(_c: Context, _n: bigint, k: Buffer, v: Buffer, f: number): Promise<void> {
    this.calls.push(['setxattr', k.toString(), v.toString(), f]);
  }
  override async create(_c: Context, p: bigint, name: Buffer, mode: number, flags: number, umask: number): Promise<CreateOut> {
    this.calls.push(['create', p, name.toString(), mode, flags, umask]);
    return { entry: entry(50n), open: { fh: 51n, openFlags: 0 } };
  }
  override async tmpfile(_c: Context, p: bigint, mode: number, flags: number, umask: number): Promise<CreateOut> {
    this.calls.push(['tmpfile', p, mode, flags, umask]);
    return { entry: entry(60n), open: { fh: 61n, openFlags: 0 } };
  }
  override async rename(_c: Context, od: bigint, on: Buffer, nd: bigint, nn: Buffer, f: number): Promise<void> {
    this.calls.push(['rename', od, on.toString(), nd, nn.toString(), f]);
  }
  override async statfs(_c: Context, _n: bigint): Promise<StatfsOut> {
    return { blocks: 100n, bfree: 50n, bavail: 40n, files: 10n, ffree: 5n, bsize: 4096, namelen: 255, frsize: 4096 };
  }
  override async getlk(_c: Context, _n: bigint, _fh: bigint, _o: bigint, l: FileLock): Promise<FileLock> {
    return { ...l, type: 2, pid: 0 };
  }
  override async setlk(_c: Context, n: bigint, fh: bigint, o: bigint, l: FileLock, sleep: boolean, flock: boolean): Promise<void> {
    this.calls.push(['setlk', n, fh, o, l.start, l.end, l.type, sleep, flock]);
  }
  override async lseek(_c: Context, _n: bigint, _fh: bigint, o: bigint, w: number): Promise<bigint> { return o + BigInt(w); }
  override async copyFileRange(_c: Context, ni: bigint, fi: bigint, oi: number, no: bigint, fo: bigint, oo: number, len: number, f: number): Promise<number> {
    this.calls.push(['cfr', ni, fi, oi, no, fo, oo, len, f]);
    return Math.min(len, 1000);
  }
  override async fsync(_c: Context, _n: bigint, fh: bigint, d: boolean): Promise<void> { this.calls.push(['fsync', fh, d]); }
  override async release(_c: Context, n: bigint, fh: bigint, f: number, l: bigint, fr: boolean): Promise<void> {
    this.calls.push(['release', n, fh, f, l, fr]);
  }
}

const ALL_OFFERED = (1n << 43n) - 1n;

function initReq(minor: number, flags = ALL_OFFERED, unique = 1n): Buffer {
  const full = encodeStruct(InitIn, {
    major: 7, minor, max_readahead: 131072, flags: Number(flags & 0xffffffffn), flags2: Number(flags >> 32n),
  });
  // Kernels before 7.36 send only the first 16 bytes.
  return encodeRequest({ opcode: Op.INIT, unique }, minor >= 36 ? full : full.subarray(0, 16));
}

async function setup(opts: Partial<ProtocolOptions> = {}, minor = 45, flags = ALL_OFFERED) {
  const fs = new StubFs();
  const srv = new ProtocolServer(fs, opts, silent);
  const rep = await srv.handle(initReq(minor, flags));
  let u = 100n;
  const call = async (opcode: number, nodeid: bigint, ...parts: Buffer[]) => srv.handle(encodeRequest({ opcode, unique: ++u, nodeid, uid: 1, gid: 2, pid: 3 }, ...parts));
  return { fs, srv, init: rep!, call };
}

/** Check the out header and return [errno, payload]. */
function parse(b: Buffer | null): [number, Buffer] {
  expect(b).not.toBeNull();
  expect(b!.readUInt32LE(0)).toBe(b!.length);
  return [-b!.readInt32LE(4) | 0, b!.subarray(OutHeader.SIZE)];
}

describe('INIT', () => {
  it('negotiates 7.45 and the wanted flags offered by the kernel', async () => {
    const { srv, init, fs } = await setup();
    const [err, p] = parse(init);
    expect(err).toBe(0);
    expect(p.length).toBe(InitOut.SIZE);
    const out = readStruct(InitOut, p);
    expect(out).toMatchObject({ major: 7, minor: 45, max_readahead: 131072, max_write: 1 << 20, max_pages: 256, time_gran: 1, max_stack_depth: 0 });
    const flags = BigInt(out.flags as number) | (BigInt(out.flags2 as number) << 32n);
    for (const f of [F.FUSE_ASYNC_READ, F.FUSE_POSIX_LOCKS, F.FUSE_ATOMIC_O_TRUNC, F.FUSE_EXPORT_SUPPORT, F.FUSE_BIG_WRITES,
      F.FUSE_DONT_MASK, F.FUSE_FLOCK_LOCKS, F.FUSE_AUTO_INVAL_DATA, F.FUSE_DO_READDIRPLUS, F.FUSE_READDIRPLUS_AUTO,
      F.FUSE_ASYNC_DIO, F.FUSE_PARALLEL_DIROPS, F.FUSE_HANDLE_KILLPRIV_V2, F.FUSE_MAX_PAGES, F.FUSE_CACHE_SYMLINKS,
      F.FUSE_SETXATTR_EXT, F.FUSE_INIT_EXT]) {
      expect(F.initFlagNames(flags & f)).toBe(F.initFlagNames(f));
    }
    for (const f of [F.FUSE_WRITEBACK_CACHE, F.FUSE_PASSTHROUGH, F.FUSE_POSIX_ACL, F.FUSE_NO_EXPORT_SUPPORT, F.FUSE_SECURITY_CTX, F.FUSE_HANDLE_KILLPRIV]) {
      expect(flags & f).toBe(0n);
    }
    expect(srv.negotiated).toEqual({ major: 7, minor: 45, flags, maxWrite: 1 << 20, maxReadahead: 131072 });
    expect(fs.initOpts).toEqual({ writeback: false, killPrivV2: true, passthrough: false, submounts: false });
    expect(srv.bufferSize()).toBe((1 << 20) + 4096);
  });

  it('requests only what is offered', async () => {
    const offered = F.FUSE_ASYNC_READ | F.FUSE_BIG_WRITES | F.FUSE_POSIX_ACL;
    const { srv } = await setup({}, 45, offered);
    expect(srv.negotiated!.flags).toBe(F.FUSE_ASYNC_READ | F.FUSE_BIG_WRITES);
  });

  it('writeback and passthrough are opt-in; together passthrough yields', async () => {
    const wb = await setup({ writeback: true });
    expect(wb.fs.initOpts).toEqual({ writeback: true, killPrivV2: true, passthrough: false, submounts: false });
    const pt = await setup({ passthrough: true });
    expect(pt.fs.initOpts!.passthrough).toBe(true);
    expect(readStruct(InitOut, parse(pt.init)[1]).max_stack_depth).toBe(1);
    const both = await setup({ writeback: true, passthrough: true });
    expect(both.fs.initOpts).toMatchObject({ writeback: true, passthrough: false });
    const noExport = await setup({ exportSupport: false });
    expect(noExport.srv.negotiated!.flags & F.FUSE_EXPORT_SUPPORT).toBe(0n);
    expect(noExport.srv.negotiated!.flags & F.FUSE_NO_EXPORT_SUPPORT).toBe(F.FUSE_NO_EXPORT_SUPPORT);
  });

  it('old minors: 16-byte InitIn, no flags2, 24-byte InitOut up to 7.22', async () => {
    const { srv, init } = await setup({}, 22);
    const [err, p] = parse(init);
    expect(err).toBe(0);
    expect(p.length).toBe(24);
    expect(p.readUInt32LE(4)).toBe(22);
    expect(srv.negotiated!.flags >> 32n).toBe(0n);
    expect(srv.negotiated!.flags & F.FUSE_INIT_EXT).toBe(0n);
    const mid = await setup({}, 31);
    expect(parse(mid.init)[1].length).toBe(64);
    expect(mid.srv.negotiated!.minor).toBe(31);
  });

  it('a newer kernel minor is answered with ours', async () => {
    const { init, srv } = await setup({}, 99);
    expect(readStruct(InitOut, parse(init)[1]).minor).toBe(45);
    expect(srv.negotiated!.minor).toBe(45);
  });

  it('a newer major gets just our version and the session waits for another INIT', async () => {
    const srv = new ProtocolServer(new StubFs(), {}, silent);
    const b = encodeRequest({ opcode: Op.INIT, unique: 1n }, encodeStruct(InitIn, { major: 8, minor: 0 }));
    const [err, p] = parse(await srv.handle(b));
    expect(err).toBe(0);
    expect([p.readUInt32LE(0), p.readUInt32LE(4), p.length]).toEqual([7, 45, 8]);
    expect(srv.negotiated).toBeNull();
    expect(parse(await srv.handle(initReq(45)))[0]).toBe(0);
  });

  it('too old a kernel gets EPROTO', async () => {
    const srv = new ProtocolServer(new StubFs(), {}, silent);
    expect(parse(await srv.handle(initReq(11)))[0]).toBe(E.EPROTO);
    expect(srv.negotiated).toBeNull();
  });

  it('requests before INIT get EIO; a second INIT gets EIO', async () => {
    const srv = new ProtocolServer(new StubFs(), {}, silent);
    expect(parse(await srv.handle(encodeRequest({ opcode: Op.LOOKUP, unique: 2n, nodeid: 1n }, cstr('a'))))[0]).toBe(E.EIO);
    expect(await srv.handle(encodeRequest({ opcode: Op.FORGET, unique: 3n, nodeid: 1n }, encodeStruct(ForgetIn, { nlookup: 1n })))).toBeNull();
    await srv.handle(initReq(45));
    expect(parse(await srv.handle(initReq(45, ALL_OFFERED, 9n)))[0]).toBe(E.EIO);
  });

  it('rejects bad options', () => {
    expect(() => new ProtocolServer(new StubFs(), { maxWrite: 100 }, silent)).toThrow(RangeError);
    expect(new ProtocolServer(new StubFs(), { maxWrite: 128 * 1024 }, silent).bufferSize()).toBe(128 * 1024 + 4096);
  });

  it('max_pages follows max_write', async () => {
    const { init } = await setup({ maxWrite: 256 * 1024 + 1, maxBackground: 64, congestionThreshold: 48 });
    expect(readStruct(InitOut, parse(init)[1])).toMatchObject({ max_pages: 65, max_write: 256 * 1024 + 1, max_background: 64, congestion_threshold: 48 });
  });
});

describe('requests', () => {
  it('LOOKUP -> EntryOut with split timeouts and encoded attr', async () => {
    const { call, fs } = await setup();
    const [err, p] = parse(await call(Op.LOOKUP, 1n, cstr('b')));
    expect(err).toBe(0);
    expect(p.length).toBe(EntryOut.SIZE);
    const e = readStruct(EntryOut, p);
    expect(e).toMatchObject({ nodeid: 11n, generation: 3n, entry_valid: 1n, entry_valid_nsec: 500_000_000, attr_valid: 0n, attr_valid_nsec: 250_000_000 });
    expect(e.attr).toMatchObject({ ino: 111n, size: 5n, atime: 1n, atimensec: 2, mode: 0o100644, blksize: 4096, flags: 0 });
    expect(fs.calls[0]).toEqual(['lookup', 1n, 'b']);
  });

  it('errors: FsError, Node-style error, bug', async () => {
    const { call } = await setup();
    expect(parse(await call(Op.LOOKUP, 1n, cstr('zz')))).toEqual([E.ENOENT, Buffer.alloc(0)]);
    expect(parse(await call(Op.LOOKUP, 1n, cstr('nodeerr')))[0]).toBe(E.EACCES);
    expect(parse(await call(Op.LOOKUP, 1n, cstr('boom')))[0]).toBe(E.EIO);
  });

  it('an FsError the filesystem resolves to (not rejects with) is answered as that errno, with no payload', async () => {
    const { call } = await setup();
    expect(parse(await call(Op.LOOKUP, 1n, cstr('gone')))).toEqual([E.ENOENT, Buffer.alloc(0)]);
    expect(parse(await call(Op.LOOKUP, 1n, cstr('denied')))).toEqual([E.EACCES, Buffer.alloc(0)]);
    for (const size of [0, 100]) {
      expect(parse(await call(Op.GETXATTR, 5n, encodeStruct(GetxattrIn, { size }), cstr('user.none')))).toEqual([E.ENODATA, Buffer.alloc(0)]);
    }
    // the same request for a name that is there still answers the entry
    expect(parse(await call(Op.LOOKUP, 1n, cstr('a')))[0]).toBe(0);
  });

  it('failure() is one frozen FsError per errno', () => {
    const f = failure(E.ENOENT);
    expect(f).toBeInstanceOf(FsError);
    expect([f.errno, f.code]).toEqual([E.ENOENT, 'ENOENT']);
    expect(failure(E.ENOENT)).toBe(f);
    expect(failure(E.ENODATA)).not.toBe(f);
    expect(Object.isFrozen(f)).toBe(true);
  });

  it('MKNOD hands the filesystem the device number as major and minor (the wire has new_encode_dev)', async () => {
    const { call, fs } = await setup();
    for (const [major, minor] of [[8, 1], [259, 0x12345], [0, 0]] as const) {
      const req = encodeStruct(MknodIn, { mode: 0o20644, rdev: encodeDev32(major, minor), umask: 0o22 });
      expect(parse(await call(Op.MKNOD, 1n, req, cstr('dev')))[0]).toBe(0);
      expect(fs.calls.at(-1)).toEqual(['mknod', 1n, 'dev', 0o20644, { major, minor }, 0o22]);
    }
  });

  it("ACCESS looks the requester's supplementary groups up only when the filesystem reads them, once", async () => {
    const pids: number[] = [];
    const seen: Array<readonly number[] | undefined> = [];
    class AccessFs extends StubFs {
      override async access(c: Context, _n: bigint, mask: number): Promise<void> {
        // like PassthroughFs: only a check against the mode bits needs the groups
        if (mask === 4) seen.push(c.groups, c.groups);
      }
    }
    const srv = new ProtocolServer(new AccessFs(), { requesterGroups: (pid) => (pids.push(pid), [7, 8]) }, silent);
    await srv.handle(initReq(45, ALL_OFFERED));
    const access = (mask: number, unique: bigint) =>
      srv.handle(encodeRequest({ opcode: Op.ACCESS, unique, nodeid: 1n, uid: 1, gid: 2, pid: 3 }, encodeStruct(AccessIn, { mask })));
    expect(parse(await access(1, 200n))[0]).toBe(0);
    expect(pids).toEqual([]);
    expect(parse(await access(4, 201n))[0]).toBe(0);
    expect(pids).toEqual([3]);
    expect(seen).toEqual([[7, 8], [7, 8]]);
  });

  it('unimplemented operations answer ENOSYS (DefaultFileSystem)', async () => {
    const { call } = await setup();
    expect(parse(await call(Op.MKDIR, 1n, Buffer.alloc(8), cstr('d')))[0]).toBe(E.ENOSYS);
    expect(parse(await call(Op.READLINK, 2n))[0]).toBe(E.ENOSYS);
  });

  it('unknown and unsupported opcodes answer ENOSYS', async () => {
    const { call } = await setup();
    for (const op of [7, 19, 54, 999, 4096, Op.BMAP, Op.IOCTL, Op.POLL, Op.SETUPMAPPING, Op.REMOVEMAPPING]) {
      expect(parse(await call(op, 1n, Buffer.alloc(64)))[0]).toBe(E.ENOSYS);
    }
    expect(await call(Op.NOTIFY_REPLY, 1n, Buffer.alloc(64))).toBeNull();
  });

  it('GETATTR with and without GETATTR_FH', async () => {
    const { call, fs } = await setup();
    const [err, p] = parse(await call(Op.GETATTR, 5n, encodeStruct(GetattrIn, { getattr_flags: 0, fh: 9n })));
    expect(err).toBe(0);
    expect(readStruct(AttrOut, p)).toMatchObject({ attr_valid: 2n, attr_valid_nsec: 0, attr: { ino: 5n } });
    await call(Op.GETATTR, 5n, encodeStruct(GetattrIn, { getattr_flags: F.FUSE_GETATTR_FH, fh: 9n }));
    expect(fs.calls).toEqual([['getattr', 5n, undefined], ['getattr', 5n, 9n]]);
  });

  it('STATX -> StatxOut', async () => {
    const { call, fs } = await setup();
    const [err, p] = parse(await call(Op.STATX, 5n, encodeStruct(StatxIn, { getattr_flags: 1, fh: 4n, sx_flags: 0x2000, sx_mask: 0xfff })));
    expect(err).toBe(0);
    expect(p.length).toBe(StatxOut.SIZE);
    const st = readStruct(Statx, p, StatxOut.stat);
    expect(st).toMatchObject({ mask: 0xfff, ino: 5n, mode: 0o100644, btime: { tv_sec: 7n, tv_nsec: 8 } });
    expect(fs.calls[0]).toEqual(['statx', 5n, 4n, 0x2000, 0xfff]);
  });

  it('OPEN -> OpenOut; FOPEN_PASSTHROUGH and backing id only when negotiated', async () => {
    const plain = await setup();
    const o = readStruct(OpenOutS, parse(await plain.call(Op.OPEN, 5n, encodeStruct(OpenIn, { flags: 2 })))[1]);
    expect(o).toEqual({ fh: 99n, open_flags: F.FOPEN_KEEP_CACHE, backing_id: 0 });
    const pt = await setup({ passthrough: true });
    const o2 = readStruct(OpenOutS, parse(await pt.call(Op.OPEN, 5n, encodeStruct(OpenIn, { flags: 2 })))[1]);
    expect(o2).toEqual({ fh: 99n, open_flags: F.FOPEN_KEEP_CACHE | F.FOPEN_PASSTHROUGH, backing_id: 7 });
  });

  it('OPEN passes FUSE_OPEN_KILL_SUIDGID (open_flags bit 0) to the filesystem', async () => {
    const s = await setup();
    await s.call(Op.OPEN, 5n, encodeStruct(OpenIn, { flags: 0o1001, open_flags: 1 }));
    await s.call(Op.OPEN, 5n, encodeStruct(OpenIn, { flags: 0o1001, open_flags: 0 }));
    const opens = s.fs.calls.filter((c) => c[0] === 'open');
    expect(opens).toEqual([['open', 5n, 0o1001, 'kill-suidgid'], ['open', 5n, 0o1001]]);
  });

  it('READ carries the data; WRITE answers WriteOut', async () => {
    const { call, fs } = await setup();
    const [err, p] = parse(await call(Op.READ, 5n, encodeStruct(ReadIn, { fh: 1n, offset: 2n, size: 4 })));
    expect([err, p.toString()]).toEqual([0, '2345']);
    const [werr, wp] = parse(await call(Op.WRITE, 5n, encodeStruct(WriteIn, { fh: 3n, offset: 7n, size: 5, write_flags: 1 }), Buffer.from('hello')));
    expect([werr, wp.readUInt32LE(0), wp.length]).toEqual([0, 5, 8]);
    expect(fs.calls).toContainEqual(['write', 3n, 7, 'hello', 1]);
  });

  it('READ into the reply: a filesystem that fills the given buffer is sent as is, pooled replies come back for reuse and are never shared', async () => {
    class IntoFs extends StubFs {
      override async read(_c: Context, _n: bigint, fh: bigint, off: number, size: number, into?: Buffer): Promise<Buffer> {
        if (fh === 9n) throw new FsError(E.EIO);
        const b = into ?? Buffer.alloc(size);
        const n = Math.min(size, 20 - off);
        for (let i = 0; i < n; i++) b[i] = 0x61 + ((off + i) % 26);
        return b.subarray(0, Math.max(0, n));
      }
    }
    const fs = new IntoFs();
    const srv = new ProtocolServer(fs, {}, silent);
    await srv.handle(initReq(45));
    srv.reuseReplies();
    let u = 100n;
    const read = (fh: bigint, offset: bigint, size: number) =>
      srv.handle(encodeRequest({ opcode: Op.READ, unique: ++u, nodeid: 5n }, encodeStruct(ReadIn, { fh, offset, size })));
    const a = (await read(1n, 0n, 4))!;
    expect(parse(a)).toEqual([0, Buffer.from('abcd')]);
    expect(a.readBigUInt64LE(8)).toBe(u);
    // not given back yet: the next reply is another buffer
    const b = (await read(1n, 16n, 4096))!;
    expect(parse(b)).toEqual([0, Buffer.from('qrst')]);
    expect(b.buffer).not.toBe(a.buffer);
    srv.recycle(a);
    srv.recycle(a); // twice: ignored
    srv.recycle(Buffer.alloc(64)); // not ours: ignored
    const c = (await read(1n, 4n, 2))!;
    expect(c.buffer).toBe(a.buffer);
    const d = (await read(1n, 6n, 2))!;
    expect(d.buffer).not.toBe(a.buffer);
    expect(d.buffer).not.toBe(c.buffer);
    expect(parse(c)).toEqual([0, Buffer.from('ef')]);
    expect(parse(d)).toEqual([0, Buffer.from('gh')]);
    expect(parse(await read(9n, 0n, 4))[0]).toBe(E.EIO);
    // the stub's own buffers (not the reply) are copied
    const { call } = await setup();
    expect(parse(await call(Op.READ, 5n, encodeStruct(ReadIn, { fh: 1n, offset: 0n, size: 3 })))).toEqual([0, Buffer.from('012')]);
  });

  it('READ with the transport\'s reply space (a ring entry): the reply is built in it, header and data; too small a space is not used', async () => {
    class IntoFs extends StubFs {
      override async read(_c: Context, _n: bigint, _fh: bigint, off: number, size: number, into?: Buffer): Promise<Buffer> {
        const b = into ?? Buffer.alloc(size);
        const n = Math.min(size, 20 - off);
        for (let i = 0; i < n; i++) b[i] = 0x61 + ((off + i) % 26);
        return b.subarray(0, Math.max(0, n));
      }
    }
    const srv = new ProtocolServer(new IntoFs(), {}, silent);
    await srv.handle(initReq(45));
    const space = Buffer.alloc(16 + 4096, 0xee);
    const req = (size: number) => encodeRequest({ opcode: Op.READ, unique: 77n, nodeid: 5n }, encodeStruct(ReadIn, { fh: 1n, offset: 2n, size }));
    const a = (await srv.handle(req(8), { replySpace: space }))!;
    expect(a.buffer).toBe(space.buffer);
    expect(a.byteOffset).toBe(space.byteOffset);
    expect(parse(a)).toEqual([0, Buffer.from('cdefghij')]);
    expect(a.readUInt32LE(0)).toBe(16 + 8);
    expect(a.readBigUInt64LE(8)).toBe(77n);
    // EOF: a short reply, still in the space
    const b = (await srv.handle(req(4096), { replySpace: space }))!;
    expect(b.buffer).toBe(space.buffer);
    expect(parse(b)).toEqual([0, Buffer.from('cdefghijklmnopqrst')]);
    // a READ larger than the space gets a buffer of its own
    const c = (await srv.handle(req(8), { replySpace: Buffer.alloc(20) }))!;
    expect(parse(c)).toEqual([0, Buffer.from('cdefghij')]);
    expect(c.length).toBe(24);
  });

  it('WRITE with less data than declared is EINVAL; READ beyond max_pages is EINVAL; offset >= 2^53 is EINVAL', async () => {
    const { call } = await setup();
    expect(parse(await call(Op.WRITE, 5n, encodeStruct(WriteIn, { fh: 3n, size: 10 }), Buffer.from('abc')))[0]).toBe(E.EINVAL);
    expect(parse(await call(Op.READ, 5n, encodeStruct(ReadIn, { fh: 1n, size: 0xffffffff })))[0]).toBe(E.EINVAL);
    expect(parse(await call(Op.READ, 5n, encodeStruct(ReadIn, { fh: 1n, offset: 2n ** 60n, size: 4 })))[0]).toBe(E.EINVAL);
  });

  it('READDIR packs with alignment and resumes from the cookie', async () => {
    const { call } = await setup();
    // '.' 32, '..' 32, 'a' 32, 'bb' 32, 'ccccccccc' 40 bytes: a 100-byte buffer takes three.
    const [err, p] = parse(await call(Op.READDIR, 1n, encodeStruct(ReadIn, { fh: 5n, offset: 0n, size: 100 })));
    expect(err).toBe(0);
    expect(p.length).toBe(96);
    expect(p.readBigUInt64LE(64 + 8)).toBe(3n);
    const [, rest] = parse(await call(Op.READDIR, 1n, encodeStruct(ReadIn, { fh: 5n, offset: 3n, size: 4096 })));
    expect(rest.length).toBe(32 + 40);
    expect(rest.subarray(32 + 24, 32 + 33).toString()).toBe('ccccccccc');
    const [, end] = parse(await call(Op.READDIR, 1n, encodeStruct(ReadIn, { fh: 5n, offset: 5n, size: 4096 })));
    expect(end.length).toBe(0);
  });

  it('READDIRPLUS: entry per name, zero EntryOut for ".", lookup undone past the size', async () => {
    const { call, fs } = await setup();
    // '.' 160 bytes, 'a' 160 bytes, 'b' would need 160 more.
    const [err, p] = parse(await call(Op.READDIRPLUS, 1n, encodeStruct(ReadIn, { fh: 5n, size: 400 })));
    expect(err).toBe(0);
    expect(p.length).toBe(320);
    expect(p.readBigUInt64LE(0)).toBe(0n);
    expect(p.readBigUInt64LE(160)).toBe(21n);
    expect(p.subarray(160 + 152, 160 + 153).toString()).toBe('a');
    expect(fs.calls).toEqual([['added', 0], ['added', 1], ['undo', 2]]);
  });

  it('GETXATTR / LISTXATTR: size 0 -> GetxattrOut, else the bytes, ERANGE when too small', async () => {
    const { call } = await setup();
    const [e0, p0] = parse(await call(Op.GETXATTR, 5n, encodeStruct(GetxattrIn, { size: 0 }), cstr('user.x')));
    expect([e0, p0.length, p0.readUInt32LE(0)]).toEqual([0, 8, 'value-of-user.x'.length]);
    const [e1, p1] = parse(await call(Op.GETXATTR, 5n, encodeStruct(GetxattrIn, { size: 100 }), cstr('user.x')));
    expect([e1, p1.toString()]).toEqual([0, 'value-of-user.x']);
    expect(parse(await call(Op.GETXATTR, 5n, encodeStruct(GetxattrIn, { size: 3 }), cstr('user.x')))[0]).toBe(E.ERANGE);
    const [e2, p2] = parse(await call(Op.LISTXATTR, 5n, encodeStruct(GetxattrIn, { size: 0 })));
    expect([e2, p2.readUInt32LE(0)]).toEqual([0, 14]);
  });

  it('SETXATTR uses the 16-byte struct with SETXATTR_EXT and the 8-byte one without', async () => {
    const ext = await setup();
    await ext.call(Op.SETXATTR, 5n, encodeStruct(SetxattrIn, { size: 3, flags: 1 }), cstr('user.k'), Buffer.from('val'));
    expect(ext.fs.calls).toEqual([['setxattr', 'user.k', 'val', 1]]);
    const old = await setup({}, 32, ALL_OFFERED & ~F.FUSE_SETXATTR_EXT);
    await old.call(Op.SETXATTR, 5n, encodeStruct(SetxattrIn, { size: 3, flags: 2 }).subarray(0, 8), cstr('user.k'), Buffer.from('val'));
    expect(old.fs.calls).toEqual([['setxattr', 'user.k', 'val', 2]]);
  });

  it('CREATE and TMPFILE answer EntryOut + OpenOut', async () => {
    const { call, fs } = await setup();
    const [err, p] = parse(await call(Op.CREATE, 1n, encodeStruct(CreateIn, { flags: 0o101, mode: 0o100644, umask: 0o22 }), cstr('new')));
    expect([err, p.length]).toEqual([0, EntryOut.SIZE + OpenOutS.SIZE]);
    expect(p.readBigUInt64LE(0)).toBe(50n);
    expect(readStruct(OpenOutS, p, EntryOut.SIZE)).toEqual({ fh: 51n, open_flags: 0, backing_id: 0 });
    expect(fs.calls[0]).toEqual(['create', 1n, 'new', 0o100644, 0o101, 0o22]);
    const [terr, tp] = parse(await call(Op.TMPFILE, 1n, encodeStruct(CreateIn, { flags: 2, mode: 0o100600, umask: 0 }), cstr('/')));
    expect([terr, tp.readBigUInt64LE(0)]).toEqual([0, 60n]);
  });

  it('RENAME passes flags 0, RENAME2 its flags', async () => {
    const { call, fs } = await setup();
    expect(parse(await call(Op.RENAME, 1n, Buffer.from([7, 0, 0, 0, 0, 0, 0, 0]), cstr('x'), cstr('y')))[0]).toBe(0);
    expect(parse(await call(Op.RENAME2, 1n, encodeStruct(Rename2In, { newdir: 8n, flags: 2 }), cstr('x'), cstr('y')))[0]).toBe(0);
    expect(fs.calls).toEqual([['rename', 1n, 'x', 7n, 'y', 0], ['rename', 1n, 'x', 8n, 'y', 2]]);
  });

  it('STATFS, LSEEK, COPY_FILE_RANGE(_64), FSYNC, RELEASE', async () => {
    const { call, fs } = await setup();
    expect(readStruct(Kstatfs, parse(await call(Op.STATFS, 1n))[1])).toMatchObject({ blocks: 100n, namelen: 255, frsize: 4096 });
    expect(parse(await call(Op.LSEEK, 5n, encodeStruct(LseekIn, { fh: 1n, offset: 10n, whence: 3 })))[1].readBigUInt64LE(0)).toBe(13n);
    const cfr = encodeStruct(CopyFileRangeIn, { fh_in: 1n, off_in: 2n, nodeid_out: 6n, fh_out: 3n, off_out: 4n, len: 2n ** 40n, flags: 0n });
    const [, p32] = parse(await call(Op.COPY_FILE_RANGE, 5n, cfr));
    expect([p32.length, p32.readUInt32LE(0)]).toEqual([8, 1000]);
    expect(fs.calls.at(-1)).toEqual(['cfr', 5n, 1n, 2, 6n, 3n, 4, 0xfffff000, 0]);
    const [, p64] = parse(await call(Op.COPY_FILE_RANGE_64, 5n, cfr));
    expect(p64.readBigUInt64LE(0)).toBe(1000n);
    expect(fs.calls.at(-1)![7]).toBe(2 ** 40);
    await call(Op.FSYNC, 5n, encodeStruct(FsyncIn, { fh: 4n, fsync_flags: F.FUSE_FSYNC_FDATASYNC }));
    await call(Op.RELEASE, 5n, encodeStruct(ReleaseIn, { fh: 4n, flags: 2, release_flags: F.FUSE_RELEASE_FLOCK_UNLOCK, lock_owner: 9n }));
    expect(fs.calls.slice(-2)).toEqual([['fsync', 4n, true], ['release', 5n, 4n, 2, 9n, true]]);
  });

  it('GETLK -> LkOut; SETLK/SETLKW pass sleep and flock', async () => {
    const { call, fs } = await setup();
    const lk = encodeStruct(LkIn, { fh: 1n, owner: 2n, lk: { start: 0n, end: 10n, type: 1, pid: 4 }, lk_flags: 0 });
    const [err, p] = parse(await call(Op.GETLK, 5n, lk));
    expect([err, p.length]).toEqual([0, 24]);
    expect(readStruct(FileLockS, p)).toEqual({ start: 0n, end: 10n, type: 2, pid: 0 });
    await call(Op.SETLK, 5n, lk);
    await call(Op.SETLKW, 5n, encodeStruct(LkIn, { fh: 1n, owner: 2n, lk: { start: 0n, end: 0n, type: 1, pid: 4 }, lk_flags: F.FUSE_LK_FLOCK }));
    expect(fs.calls).toEqual([['setlk', 5n, 1n, 2n, 0n, 10n, 1, false, false], ['setlk', 5n, 1n, 2n, 0n, 0n, 1, true, true]]);
  });

  it('FORGET and BATCH_FORGET get no reply; a lying batch count is dropped', async () => {
    const { call, fs } = await setup();
    expect(await call(Op.FORGET, 7n, encodeStruct(ForgetIn, { nlookup: 3n }))).toBeNull();
    const one = (n: bigint, k: bigint) => encodeStruct(ForgetOne, { nodeid: n, nlookup: k });
    expect(await call(Op.BATCH_FORGET, 0n, encodeStruct(BatchForgetIn, { count: 2 }), one(8n, 1n), one(9n, 2n))).toBeNull();
    expect(await call(Op.BATCH_FORGET, 0n, encodeStruct(BatchForgetIn, { count: 3 }), one(10n, 1n))).toBeNull();
    expect(await call(Op.FORGET, 7n, Buffer.alloc(4))).toBeNull();
    expect(fs.calls).toEqual([['forget', 7n, 3n], ['forget', 8n, 1n], ['forget', 9n, 2n]]);
  });

  it('malformed requests: EINVAL when the unique is readable, nothing otherwise', async () => {
    const { srv, call } = await setup();
    expect(parse(await call(Op.LOOKUP, 1n, Buffer.from('no-nul')))[0]).toBe(E.EINVAL);
    expect(parse(await call(Op.GETATTR, 1n, Buffer.alloc(3)))[0]).toBe(E.EINVAL);
    const lying = encodeRequest({ opcode: Op.GETATTR, unique: 55n, nodeid: 1n }, Buffer.alloc(16));
    lying.writeUInt32LE(1000, 0);
    const [err] = parse(await srv.handle(lying));
    expect(err).toBe(E.EIO);
    expect(await srv.handle(Buffer.alloc(10))).toBeNull();
    expect(await srv.handle(Buffer.alloc(0))).toBeNull();
  });

  it('INTERRUPT: no reply; an interrupted request that fails answers EINTR', async () => {
    const fs = new StubFs();
    let release!: () => void;
    fs.lookup = async () => {
      await new Promise<void>((r) => { release = r; });
      throw new FsError(E.ENOENT);
    };
    const srv = new ProtocolServer(fs, {}, silent);
    await srv.handle(initReq(45));
    const pending = srv.handle(encodeRequest({ opcode: Op.LOOKUP, unique: 200n, nodeid: 1n }, cstr('x')));
    expect(await srv.handle(encodeRequest({ opcode: Op.INTERRUPT, unique: 201n }, encodeStruct(InterruptIn, { unique: 200n })))).toBeNull();
    await new Promise((r) => setImmediate(r));
    release();
    expect(parse(await pending)[0]).toBe(E.EINTR);
  });

  it('DESTROY calls fs.destroy, replies, then onDestroy; a new INIT is accepted', async () => {
    let called = false;
    const { srv, call, fs } = await setup({ onDestroy: () => { called = true; } });
    const [err] = parse(await call(Op.DESTROY, 0n));
    expect(err).toBe(0);
    expect(fs.calls).toContainEqual(['destroy']);
    expect(called).toBe(false);
    await new Promise((r) => setImmediate(r));
    expect(called).toBe(true);
    expect(srv.negotiated).toBeNull();
    expect(parse(await call(Op.GETATTR, 1n, Buffer.alloc(16)))[0]).toBe(E.EIO);
    expect(parse(await srv.handle(initReq(45, ALL_OFFERED, 500n)))[0]).toBe(0);
  });

  it('errno out of the kernel range becomes EIO', async () => {
    const { srv, call } = await setup();
    (srv.fs as StubFs).getattr = async () => { throw new FsError(4000); };
    expect(parse(await call(Op.GETATTR, 1n, Buffer.alloc(16)))[0]).toBe(E.EIO);
  });
});

describe('tracing', () => {
  it('writes rx/tx lines at debug only', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(c, _e, cb) { lines.push(String(c)); cb(); } });
    const log = pino({ level: 'debug' }, sink);
    const srv = new ProtocolServer(new StubFs(), {}, log);
    await srv.handle(initReq(45));
    await srv.handle(encodeRequest({ opcode: Op.LOOKUP, unique: 9n, nodeid: 1n }, cstr('a\xff')));
    await srv.handle(encodeRequest({ opcode: Op.READ, unique: 10n, nodeid: 5n }, encodeStruct(ReadIn, { fh: 1n, size: 3 })));
    const msgs = lines.map((l) => JSON.parse(l).msg as string);
    expect(msgs).toContain('rx 9 LOOKUP n1 "a\\xc3\\xbf"');
    expect(msgs).toContain('tx 9 ENOENT');
    expect(msgs.find((m) => m.startsWith('rx 10 READ n5'))).toMatch(/fh=1 offset=0 size=3/);
    expect(msgs).toContain('tx 10 OK 19');
  });
});
