import { describe, expect, it } from 'vitest';
import * as abi from '../../src/fuse/abi.js';
import { decodeDev32, encodeDev32 } from '../../src/sys/stat.js';
import { initFlagNames, FUSE_ASYNC_READ, FUSE_PASSTHROUGH, FUSE_INIT_EXT } from '../../src/fuse/flags.js';

/** sizeof(struct fuse_*) from include/uapi/linux/fuse.h, protocol 7.45 (the role of repr(C)/checkFixedBufferSize). */
const KERNEL_SIZES: Record<string, number> = {
  InHeader: 40, OutHeader: 16, ExtHeader: 8, Attr: 88, EntryOut: 128, AttrOut: 104, GetattrIn: 16, SetattrIn: 88,
  SxTime: 16, Statx: 256, StatxIn: 24, StatxOut: 288, ForgetIn: 8, ForgetOne: 16, BatchForgetIn: 8,
  MknodIn: 16, MkdirIn: 8, RenameIn: 8, Rename2In: 16, LinkIn: 8, OpenIn: 8, CreateIn: 16, OpenOut: 16,
  ReleaseIn: 24, FlushIn: 24, ReadIn: 40, WriteIn: 40, WriteOut: 8, FsyncIn: 16, FallocateIn: 32,
  LseekIn: 24, LseekOut: 8, CopyFileRangeIn: 56, CopyFileRangeOut: 8, FileLock: 24, LkIn: 48, LkOut: 24,
  SetxattrIn: 16, GetxattrIn: 8, GetxattrOut: 8, AccessIn: 8, Kstatfs: 80, StatfsOut: 80, SyncfsIn: 8,
  InitIn: 64, InitOut: 64, InterruptIn: 8, BmapIn: 16, IoctlIn: 32, PollIn: 24, Dirent: 24,
  Direntplus: 152, NotifyInvalInodeOut: 24, NotifyInvalEntryOut: 16,
};

/** Every struct the module exports. */
const STRUCTS = (Object.values(abi) as unknown[]).filter((v): v is abi.Struct => typeof v === 'object' && v !== null && 'NAME' in v && 'SIZE' in v && 'FIELDS' in v);

describe('fuse abi sizes', () => {
  it('every struct has the kernel size', () => {
    for (const s of STRUCTS) expect([s.NAME, s.SIZE]).toEqual([s.NAME, KERNEL_SIZES[s.NAME]]);
    expect(STRUCTS.map((s) => s.NAME).sort()).toEqual(Object.keys(KERNEL_SIZES).sort());
  });

  it('compat sizes', () => {
    expect(abi.FUSE_COMPAT_22_INIT_OUT_SIZE).toBe(24);
    expect(abi.FUSE_COMPAT_SETXATTR_IN_SIZE).toBe(8);
  });

  it('a few offsets match the kernel layout', () => {
    expect(abi.InHeader.unique).toBe(8);
    expect(abi.InHeader.total_extlen).toBe(36);
    expect(abi.Attr.rdev).toBe(76);
    expect(abi.Attr.flags).toBe(84);
    expect(abi.EntryOut.attr).toBe(40);
    expect(abi.AttrOut.attr).toBe(16);
    expect(abi.InitOut.max_write).toBe(20);
    expect(abi.InitOut.flags2).toBe(32);
    expect(abi.InitOut.max_stack_depth).toBe(36);
    expect(abi.InitOut.request_timeout).toBe(40);
    expect(abi.Statx.atime).toBe(64);
    expect(abi.Statx.rdev_major).toBe(128);
    expect(abi.StatxOut.stat).toBe(32);
    expect(abi.LkIn.lk).toBe(16);
    expect(abi.LkIn.lk_flags).toBe(40);
    expect(abi.Direntplus.dirent).toBe(128);
    expect(abi.OpenOut.backing_id).toBe(12);
  });
});

describe('fuse abi helpers', () => {
  it('new_encode_dev matches the kernel formula and round-trips through new_decode_dev', () => {
    expect(encodeDev32(8, 1)).toBe(0x801);
    expect(encodeDev32(259, 0x12345)).toBe(((0x45) | (259 << 8) | ((0x12345 & ~0xff) << 12)) >>> 0);
    for (const [maj, min] of [[0, 0], [1, 3], [4095, 0xfffff], [253, 256]] as const) {
      expect(decodeDev32(encodeDev32(maj, min))).toEqual({ major: maj, minor: min });
    }
    // the kernel's own decode of 0x801 and of a large minor (include/linux/kdev_t.h)
    expect(decodeDev32(0x801)).toEqual({ major: 8, minor: 1 });
    expect(decodeDev32(0x12345678)).toEqual({ major: 0x456, minor: 0x12378 });
  });

  it('writeTimeout splits milliseconds', () => {
    const b = Buffer.alloc(12);
    abi.writeTimeout(b, 1500, 0, 8);
    expect(b.readBigUInt64LE(0)).toBe(1n);
    expect(b.readUInt32LE(8)).toBe(500_000_000);
    abi.writeTimeout(b, 0.001, 0, 8);
    expect([b.readBigUInt64LE(0), b.readUInt32LE(8)]).toEqual([0n, 1000]);
    for (const junk of [-5, NaN, Infinity, 0]) {
      abi.writeTimeout(b, junk, 0, 8);
      expect([b.readBigUInt64LE(0), b.readUInt32LE(8)]).toEqual([0n, 0]);
    }
    abi.writeTimeout(b, 86_400_000 * 365 * 100, 0, 8);
    expect(b.readBigUInt64LE(0)).toBe(3_153_600_000n);
  });

  it('u64 numbers without bigint', () => {
    const b = Buffer.alloc(8);
    abi.writeU64(b, 2 ** 40 + 7, 0);
    expect(b.readBigUInt64LE(0)).toBe(2n ** 40n + 7n);
    expect(abi.readU64Num(b, 0)).toBe(2 ** 40 + 7);
    b.writeBigUInt64LE(2n ** 53n, 0);
    expect(abi.readU64Num(b, 0)).toBe(-1);
    b.writeBigUInt64LE(2n ** 53n - 1n, 0);
    expect(abi.readU64Num(b, 0)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('writeStruct/readStruct round-trip and zero padding', () => {
    const b = Buffer.alloc(abi.LkIn.SIZE, 0xaa);
    abi.writeStruct(abi.LkIn, b, 0, { fh: 5n, owner: 2n ** 63n, lk: { start: 1n, end: 9n, type: 1, pid: 42 }, lk_flags: 1 });
    expect(abi.readStruct(abi.LkIn, b)).toEqual({ fh: 5n, owner: 2n ** 63n, lk: { start: 1n, end: 9n, type: 1, pid: 42 }, lk_flags: 1, padding: 0 });
    const k = Buffer.alloc(abi.Kstatfs.SIZE, 0xff);
    abi.writeStruct(abi.Kstatfs, k, 0, {});
    expect(k.every((x) => x === 0)).toBe(true);
  });

  it('writeAttr writes every byte and encodes rdev and signed times', () => {
    const b = Buffer.alloc(abi.Attr.SIZE, 0xee);
    abi.writeAttr(b, 0, {
      ino: 2n ** 40n, size: 10n, blocks: 1n, atime: { sec: -1n, nsec: 5 }, mtime: { sec: 2n, nsec: 6 },
      ctime: { sec: 3n, nsec: 7 }, btime: null, mode: 0o20644, nlink: 1, uid: 1000, gid: 1000, rdevMajor: 1,
      rdevMinor: 3, blksize: 4096, attributes: 0n,
    });
    const v = abi.readStruct(abi.Attr, b);
    expect(v).toMatchObject({ ino: 2n ** 40n, atime: -1n, atimensec: 5, rdev: 0x103, blksize: 4096, flags: 0 });
  });
});

describe('fuse flag names', () => {
  it('names init flags, including flags2 bits and unknown ones', () => {
    expect(initFlagNames(FUSE_ASYNC_READ | FUSE_INIT_EXT | FUSE_PASSTHROUGH)).toBe('ASYNC_READ|INIT_EXT|PASSTHROUGH');
    expect(initFlagNames(1n << 60n)).toBe('0x1000000000000000');
    expect(initFlagNames(0n)).toBe('0');
  });
});

describe('fuse abi writers leave no stale bytes', () => {
  const a = {
    ino: 1n, size: 2n, blocks: 3n, atime: { sec: 4n, nsec: 5 }, mtime: { sec: 6n, nsec: 7 }, ctime: { sec: 8n, nsec: 9 },
    btime: { sec: 10n, nsec: 11 }, mode: 0o40755, nlink: 2, uid: 3, gid: 4, rdevMajor: 5, rdevMinor: 6, blksize: 512, attributes: 0x20n,
  };
  /** Write into buffers pre-filled with two different patterns: equal results mean every byte was written. */
  function full(size: number, write: (b: Buffer) => void): void {
    const x = Buffer.alloc(size, 0xee);
    const y = Buffer.alloc(size, 0x11);
    write(x);
    write(y);
    expect(x).toEqual(y);
  }
  it('every hot-path writer covers its whole struct', () => {
    full(abi.Attr.SIZE, (b) => abi.writeAttr(b, 0, a));
    full(abi.EntryOut.SIZE, (b) => abi.writeEntryOut(b, 0, { nodeid: 1n, generation: 2n, attr: a, entryTimeoutMs: 1, attrTimeoutMs: 2 }));
    full(abi.EntryOut.SIZE, (b) => abi.writeNoEntryOut(b, 0));
    full(abi.AttrOut.SIZE, (b) => abi.writeAttrOut(b, 0, { attr: a, attrTimeoutMs: 5 }));
    full(abi.StatxOut.SIZE, (b) => abi.writeStatxOut(b, 0, { attr: a, attrTimeoutMs: 5 }));
    full(abi.StatxOut.SIZE, (b) => abi.writeStatxOut(b, 0, { attr: { ...a, btime: null }, attrTimeoutMs: 5 }));
    full(abi.OpenOut.SIZE, (b) => abi.writeOpenOut(b, 0, { fh: 1n, openFlags: 2 }, 2));
    full(abi.Kstatfs.SIZE, (b) => abi.writeKstatfs(b, 0, { blocks: 1n, bfree: 1n, bavail: 1n, files: 1n, ffree: 1n, bsize: 1, namelen: 1, frsize: 1 }));
    full(abi.FileLock.SIZE, (b) => abi.writeFileLock(b, 0, { start: 1n, end: 2n, type: 1, pid: 3 }));
    full(abi.InitOut.SIZE, (b) => abi.writeStruct(abi.InitOut, b, 0, { major: 7, minor: 45 }));
    full(32, (b) => abi.writeDirent(b, 0, 1n, 2n, 4, Buffer.from('abc')));
  });

  it('w64/r64 round-trip, wrap signed values and check bounds', () => {
    const b = Buffer.alloc(16);
    abi.w64(b, 2n ** 64n - 1n, 0);
    expect(b.readBigUInt64LE(0)).toBe(2n ** 64n - 1n);
    abi.w64(b, -2n, 8);
    expect(b.readBigInt64LE(8)).toBe(-2n);
    expect(abi.r64(b, 8)).toBe(2n ** 64n - 2n);
    expect(() => abi.r64(b, 9)).toThrow(RangeError);
    expect(() => abi.r64(b, -1)).toThrow(RangeError);
    expect(() => abi.w64(b, 1n, 9)).toThrow(RangeError);
    expect(() => abi.w64(b, 1 as unknown as bigint, 0)).toThrow(TypeError);
  });
});

