import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.js';
import type { DirEntry, Entry } from '../../src/fs/types.js';
import { Dirent, Direntplus, encodeStruct, EntryOut, InHeader, MAX_ERRNO, MkdirIn, OutHeader, readStruct, RenameIn } from '../../src/fuse/abi.js';
import {
  allocReply, cstr, encodeError, encodeGroupsExt, encodeReply, encodeRequest, initOutSize, inSize,
  parseArgs, parseHeader, replyErrno, truncateReply,
} from '../../src/fuse/codec.js';
import { DirentList } from '../../src/fuse/dirent-list.js';
import { InitIn, SetxattrIn } from '../../src/fuse/abi.js';

describe('parseHeader', () => {
  it('round-trips the header fields', () => {
    const b = encodeRequest({ opcode: 1, unique: 77n, nodeid: 2n ** 63n, uid: 1000, gid: 100, pid: 42 }, cstr('x'));
    const r = parseHeader(b);
    expect(r).toMatchObject({ opcode: 1, unique: 77n, nodeid: 2n ** 63n, end: b.length });
    expect(r.ctx).toEqual({ uid: 1000, gid: 100, pid: 42, unique: 77n });
  });

  it('rejects short buffers and lying lengths', () => {
    expect(() => parseHeader(Buffer.alloc(39))).toThrow(ProtocolError);
    const b = encodeRequest({ opcode: 1, unique: 1n }, cstr('x'));
    b.writeUInt32LE(b.length + 1, 0);
    expect(() => parseHeader(b)).toThrow(/length/);
    b.writeUInt32LE(b.length - 1, 0);
    expect(() => parseHeader(b)).toThrow(/length/);
  });

  it('subtracts request extensions, and rejects extensions larger than the request', () => {
    // an 8-byte extension of a type we do not use (size 8, type 31): skipped
    const ext = Buffer.alloc(8);
    ext.writeUInt32LE(8, 0);
    ext.writeUInt32LE(31, 4);
    const b = encodeRequest({ opcode: 1, unique: 1n }, cstr('abc'), ext);
    b.writeUInt16LE(1, InHeader.total_extlen);
    expect(parseHeader(b).end).toBe(b.length - 8);
    b.writeUInt16LE(10, InHeader.total_extlen);
    expect(() => parseHeader(b)).toThrow(ProtocolError);
  });

  it('reads FUSE_EXT_GROUPS into ctx.groups, after other extensions, and leaves the name where it was', () => {
    const other = Buffer.alloc(16);
    other.writeUInt32LE(16, 0);
    other.writeUInt32LE(1, 4);
    const b = encodeRequest({ opcode: 9, unique: 3n, uid: 1000, gid: 1000, ext: Buffer.concat([other, encodeGroupsExt([4242])]) },
      Buffer.alloc(MkdirIn.SIZE), cstr('dir'));
    const r = parseHeader(b);
    expect(r.ctx.groups).toEqual([4242]);
    parseArgs(r, MkdirIn.SIZE, 1);
    expect(r.name1!.toString()).toBe('dir');
    expect(parseHeader(encodeRequest({ opcode: 9, unique: 3n, ext: encodeGroupsExt([1, 2, 3, 0xffffffff]) })).ctx.groups).toEqual([1, 2, 3, 0xffffffff]);
    expect(parseHeader(encodeRequest({ opcode: 9, unique: 3n })).ctx.groups).toBeUndefined();
  });

  it('hostile extensions are a ProtocolError, never a crash or an out-of-bounds read', () => {
    const groups = (size: number, n: number, total = size) => {
      const e = Buffer.alloc(total);
      e.writeUInt32LE(size, 0);
      e.writeUInt32LE(32, 4);
      if (total >= 12) e.writeUInt32LE(n, 8);
      return e;
    };
    const bad = [
      groups(16, 3), // three groups in room for one
      groups(16, 0xffffffff),
      groups(8, 1), // no room for nr_groups
      groups(0, 0, 16), // size 0 would loop forever
      groups(12, 1, 16), // not a multiple of 8
      groups(24, 1, 16), // past the end
      groups(0xfffffff8, 1, 16),
    ];
    for (const ext of bad) {
      expect(() => parseHeader(encodeRequest({ opcode: 9, unique: 1n, ext }, cstr('x'))), ext.toString('hex')).toThrow(ProtocolError);
    }
  });
});

describe('parseArgs', () => {
  it('splits a struct and two names', () => {
    const b = encodeRequest({ opcode: 12, unique: 1n }, encodeStruct(RenameIn, { newdir: 9n }), cstr('old'), cstr('new'));
    const r = parseHeader(b);
    parseArgs(r, RenameIn.SIZE, 2);
    expect(r.name1!.toString()).toBe('old');
    expect(r.name2!.toString()).toBe('new');
    expect(r.restOff).toBe(b.length);
  });

  it('keeps non-UTF-8 names byte-exact', () => {
    const name = Buffer.from([0xff, 0xfe, 0x80]);
    const r = parseHeader(encodeRequest({ opcode: 1, unique: 1n }, cstr(name)));
    parseArgs(r, 0, 1);
    expect(r.name1).toEqual(name);
  });

  it('missing NUL or short struct is a ProtocolError (EINVAL)', () => {
    const noNul = parseHeader(encodeRequest({ opcode: 1, unique: 1n }, Buffer.from('abc')));
    expect(() => parseArgs(noNul, 0, 1)).toThrow(/NUL/);
    const short = parseHeader(encodeRequest({ opcode: 9, unique: 1n }, Buffer.alloc(4)));
    expect(() => parseArgs(short, MkdirIn.SIZE, 1)).toThrow(/shorter/);
    const oneName = parseHeader(encodeRequest({ opcode: 12, unique: 1n }, Buffer.alloc(8), cstr('a'), Buffer.from('b')));
    expect(() => parseArgs(oneName, RenameIn.SIZE, 2)).toThrow(/second name/);
    try {
      parseArgs(noNul, 0, 1);
    } catch (e) {
      expect((e as ProtocolError).errno).toBe(22);
    }
  });

  it('a NUL inside the extension area does not terminate a name', () => {
    // a well-formed 8-byte extension (size 8, type 31): its bytes hold NULs
    const b = encodeRequest({ opcode: 1, unique: 1n }, Buffer.from('abc'), Buffer.from([8, 0, 0, 0, 31, 0, 0, 0]));
    b.writeUInt16LE(1, InHeader.total_extlen);
    const r = parseHeader(b);
    expect(() => parseArgs(r, 0, 1)).toThrow(/NUL/);
  });

  it('version-dependent argument sizes', () => {
    expect(inSize(InitIn, null)).toBe(8);
    expect(inSize(SetxattrIn, null)).toBe(8);
    expect(inSize(SetxattrIn, { minor: 45, setxattrExt: false })).toBe(8);
    expect(inSize(SetxattrIn, { minor: 45, setxattrExt: true })).toBe(16);
    expect(inSize(MkdirIn, null)).toBe(8);
    expect(inSize(null, null)).toBe(0);
  });
});

describe('replies', () => {
  it('error replies carry -errno and only the header', () => {
    const b = encodeError(5n, 2);
    expect(readStruct(OutHeader, b)).toEqual({ len: 16, error: -2, unique: 5n });
    expect(replyErrno(b)).toBe(2);
  });

  it('errno values the kernel would reject become EIO', () => {
    for (const bad of [0, -2, MAX_ERRNO + 1, 100000, 1.5, NaN]) expect(replyErrno(encodeError(1n, bad))).toBe(5);
    expect(replyErrno(encodeError(1n, MAX_ERRNO))).toBe(MAX_ERRNO);
  });

  it('payload replies', () => {
    const b = encodeReply(9n, Buffer.from('hello'));
    expect(b.length).toBe(21);
    expect(readStruct(OutHeader, b)).toEqual({ len: 21, error: 0, unique: 9n });
    expect(b.subarray(16).toString()).toBe('hello');
    expect(encodeReply(9n).length).toBe(16);
  });

  it('truncateReply fixes the header length', () => {
    const b = allocReply(3n, 128);
    const t = truncateReply(b, 16 + 120);
    expect(t.length).toBe(136);
    expect(t.readUInt32LE(0)).toBe(136);
  });

  it('compat sizes by minor', () => {
    expect(initOutSize(12)).toBe(24);
    expect(initOutSize(22)).toBe(24);
    expect(initOutSize(23)).toBe(64);
  });
});

const attr = {
  ino: 7n, size: 0n, blocks: 0n, atime: { sec: 0n, nsec: 0 }, mtime: { sec: 0n, nsec: 0 }, ctime: { sec: 0n, nsec: 0 },
  btime: null, mode: 0o100644, nlink: 1, uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, blksize: 4096, attributes: 0n,
};
const dirent = (name: string, off: bigint): DirEntry => ({ ino: off + 100n, off, type: 8, name: Buffer.from(name) });

/** Walk packed READDIR records; checks alignment and zero padding on the way. */
function walk(b: Buffer, plus: boolean): Array<{ name: string; off: bigint; nodeid?: bigint }> {
  const out: Array<{ name: string; off: bigint; nodeid?: bigint }> = [];
  let o = OutHeader.SIZE;
  expect(b.readUInt32LE(0)).toBe(b.length);
  while (o < b.length) {
    expect((o - OutHeader.SIZE) % 8).toBe(0);
    const d = o + (plus ? EntryOut.SIZE : 0);
    const namelen = b.readUInt32LE(d + Dirent.namelen);
    const name = b.subarray(d + Dirent.SIZE, d + Dirent.SIZE + namelen).toString();
    const size = ((plus ? Direntplus.SIZE : Dirent.SIZE) + namelen + 7) & ~7;
    expect(b.subarray(d + Dirent.SIZE + namelen, o + size).every((x) => x === 0)).toBe(true);
    out.push({ name, off: b.readBigUInt64LE(d + Dirent.off), ...(plus ? { nodeid: b.readBigUInt64LE(o) } : {}) });
    o += size;
  }
  expect(o).toBe(b.length);
  return out;
}

describe('DirentList', () => {
  it('packs 8-byte aligned records and stops when the next one does not fit', () => {
    // records: 24+1 -> 32, 24+9 -> 40, 24+8 -> 32: 104 bytes; a 100-byte buffer holds the first two.
    const l = new DirentList(1n, 100);
    expect(l.add(dirent('a', 1n))).toBe(true);
    expect(l.add(dirent('ninechars', 2n))).toBe(true);
    expect(l.add(dirent('eightchr', 3n))).toBe(false);
    expect(l.count).toBe(2);
    const b = l.finish();
    expect(b.length).toBe(16 + 72);
    expect(walk(b, false)).toEqual([{ name: 'a', off: 1n }, { name: 'ninechars', off: 2n }]);
  });

  it('exact fit is taken', () => {
    const l = new DirentList(1n, 32);
    expect(l.add(dirent('12345678', 1n))).toBe(true);
    expect(l.add(dirent('x', 2n))).toBe(false);
    expect(l.finish().length).toBe(48);
  });

  it('an empty listing is just the header', () => {
    expect(new DirentList(4n, 4096).finish()).toHaveLength(16);
  });

  it('readdirplus records carry an EntryOut, zero for entries without lookup', () => {
    const l = new DirentList(1n, 4096);
    const entry: Entry = { nodeid: 42n, generation: 1n, attr, entryTimeoutMs: 1000, attrTimeoutMs: 1000 };
    expect(l.addPlus(dirent('.', 1n), null)).toBe(true);
    expect(l.addPlus(dirent('file', 2n), entry)).toBe(true);
    const b = l.finish();
    expect(walk(b, true)).toEqual([{ name: '.', off: 1n, nodeid: 0n }, { name: 'file', off: 2n, nodeid: 42n }]);
    expect(b.subarray(16, 16 + EntryOut.SIZE).every((x) => x === 0)).toBe(true);
    expect(b.readBigUInt64LE(16 + 160 + EntryOut.entry_valid)).toBe(1n);
  });

  it('readdirplus stops at the size', () => {
    const l = new DirentList(1n, 160);
    expect(l.addPlus(dirent('abc', 1n), null)).toBe(true);
    expect(l.addPlus(dirent('d', 2n), null)).toBe(false);
  });
});
