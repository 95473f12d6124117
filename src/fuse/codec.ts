/**
 * Request parsing and reply encoding. Every length check is explicit arithmetic on numbers that
 * were read from the buffer (virtiofsd checked_sub, go-fuse parseRequest): a client that lies
 * about a length gets a ProtocolError, never an out-of-bounds read.
 *
 * Version quirks of the minors we accept (7.12 and later) live here, each with a comment: the size
 * of InitOut up to 7.22, the INIT argument before 7.36 and SetxattrIn without SETXATTR_EXT.
 */
import { E, ProtocolError } from '../errors.js';
import type { MappedSeg } from '../fs/filesystem.js';
import type { Context } from '../fs/types.js';
import {
  ExtHeader, FUSE_COMPAT_22_INIT_OUT_SIZE, FUSE_COMPAT_SETXATTR_IN_SIZE, FUSE_EXT_GROUPS, InHeader, InitIn, InitOut,
  MAX_ERRNO, OutHeader, r64, SetxattrIn, w64,
  type Struct,
} from './abi.js';
import { extensionRecords, supplementaryGroups } from './extensions.js';

/** One parsed request. Names and data are views into `buf`: it must not be reused until the reply. */
/**
 * What a transport that maps its client's memory (virtio-fs: the guest's pages) offers a request,
 * so that READ and WRITE data move between the file and that memory without a Buffer between.
 * `readInto`: the reply space after fuse_out_header, at least as large as any READ of the request.
 * `payload`: a WRITE's data, which is then not in `buf` (the header's len counts it).
 * `replySpace`: memory of the transport's own (a FUSE ring entry) where a READ's reply may be built,
 * header and data, which the transport then sends without copying it.
 */
export interface TransportIo {
  readonly readInto?: MappedSeg[];
  readonly payload?: MappedSeg[];
  readonly payloadBytes?: number;
  readonly replySpace?: Buffer;
}

export interface Request {
  readonly buf: Buffer;
  /** set by the protocol server when the transport offers it */
  io?: TransportIo;
  readonly opcode: number;
  readonly unique: bigint;
  readonly nodeid: bigint;
  readonly ctx: Context;
  /** Byte offset where the payload after the in struct and names starts (write data, xattr value). */
  restOff: number;
  /** End of the payload: `len` minus request extensions (total_extlen). */
  readonly end: number;
  /** First and second NUL-terminated name, without the NUL (views into buf), or null. */
  name1: Buffer | null;
  name2: Buffer | null;
}

/** Offset of every opcode's in struct. */
export const IN = InHeader.SIZE;

/** What the codec needs to know about the negotiated connection. */
interface WireVersion {
  minor: number;
  setxattrExt: boolean;
}

/**
 * Check the header and build a Request. Throws ProtocolError when the buffer is shorter than a
 * header, its `len` disagrees with the buffer, or the extension length runs past the header.
 */
export function parseHeader(buf: Buffer, outside = 0): Request {
  if (buf.length < InHeader.SIZE) throw new ProtocolError('request shorter than fuse_in_header', E.EIO);
  const len = buf.readUInt32LE(InHeader.len);
  // `outside`: bytes of a WRITE payload the transport keeps in mapped memory (TransportIo)
  if (len !== buf.length + outside) throw new ProtocolError('request length does not match its header', E.EIO);
  const extlen = buf.readUInt16LE(InHeader.total_extlen) * 8;
  if (outside !== 0 && extlen !== 0) throw new ProtocolError('request extensions after a payload kept outside', E.EINVAL);
  // Extensions (security context, supplementary groups) sit at the end (src/fuse/extensions.ts):
  // their length is subtracted so that a trailing name is still found where the kernel put it.
  const end = len - extlen;
  if (end < InHeader.SIZE) throw new ProtocolError('request extensions overlap the header', E.EINVAL);
  const unique = r64(buf, InHeader.unique);
  const ctx: Context = {
    uid: buf.readUInt32LE(InHeader.uid),
    gid: buf.readUInt32LE(InHeader.gid),
    pid: buf.readUInt32LE(InHeader.pid),
    unique,
  };
  if (extlen !== 0) parseExtensions(buf, end, ctx);
  return {
    buf,
    opcode: buf.readUInt32LE(InHeader.opcode),
    unique,
    nodeid: r64(buf, InHeader.nodeid),
    ctx,
    restOff: IN,
    end,
    name1: null,
    name2: null,
  };
}

/** The request extensions (src/fuse/extensions.ts) that the header's context carries: the supplementary groups. */
function parseExtensions(buf: Buffer, start: number, ctx: Context): void {
  for (const rec of extensionRecords(buf, start, buf.length)) {
    if (rec.type === FUSE_EXT_GROUPS) ctx.groups = supplementaryGroups(rec);
  }
}

/**
 * Minimum size of an opcode's in struct on this connection. Quirks:
 * - INIT: before 7.36 the kernel sends 16 bytes (no flags2) and before 7.6 8 bytes; we need only
 *   major+minor to answer (a too-old kernel gets EPROTO), the rest is read when present.
 * - SETXATTR: 16 bytes only with FUSE_SETXATTR_EXT, else the 8-byte 7.x original.
 */
export function inSize(s: Struct | null, v: WireVersion | null): number {
  if (s === null) return 0;
  if (s === InitIn) return 8;
  if (s === SetxattrIn && !(v?.setxattrExt ?? false)) return FUSE_COMPAT_SETXATTR_IN_SIZE;
  return s.SIZE;
}

/**
 * Check that the in struct fits and split `names` NUL-terminated names after it. A name without
 * its NUL is EINVAL. Bytes after the last name (symlink target's trailing data, xattr value, write
 * data) start at `req.restOff`.
 */
export function parseArgs(req: Request, structSize: number, names: 0 | 1 | 2): void {
  const avail = req.end - IN;
  if (avail < structSize) throw new ProtocolError('request shorter than its argument struct', E.EINVAL);
  let pos = IN + structSize;
  if (names >= 1) {
    const nul = req.buf.indexOf(0, pos);
    if (nul < 0 || nul >= req.end) throw new ProtocolError('name is not NUL-terminated', E.EINVAL);
    req.name1 = req.buf.subarray(pos, nul);
    pos = nul + 1;
    if (names === 2) {
      const nul2 = req.buf.indexOf(0, pos);
      if (nul2 < 0 || nul2 >= req.end) throw new ProtocolError('second name is not NUL-terminated', E.EINVAL);
      req.name2 = req.buf.subarray(pos, nul2);
      pos = nul2 + 1;
    }
  }
  req.restOff = pos;
}

// ---------------------------------------------------------------------------------------------
// Replies

/** A reply buffer of OutHeader + `payload` bytes with the header written (error 0). */
export function allocReply(unique: bigint, payload: number): Buffer {
  return writeReplyHeader(Buffer.allocUnsafe(OutHeader.SIZE + payload), unique);
}

/** Write the header of a success reply that is all of `b` (its payload already in place). */
export function writeReplyHeader(b: Buffer, unique: bigint): Buffer {
  b.writeUInt32LE(b.length, OutHeader.len);
  b.writeInt32LE(0, OutHeader.error);
  w64(b, unique, OutHeader.unique);
  return b;
}

/**
 * An error reply. `errno` is positive up to here; this is the one place where the sign flips.
 * Values the kernel would reject (not an integer in 1..MAX_ERRNO) become EIO.
 */
export function encodeError(unique: bigint, errno: number): Buffer {
  const e = Number.isInteger(errno) && errno > 0 && errno <= MAX_ERRNO ? errno : E.EIO;
  const b = Buffer.allocUnsafe(OutHeader.SIZE);
  b.writeUInt32LE(OutHeader.SIZE, OutHeader.len);
  b.writeInt32LE(-e, OutHeader.error);
  w64(b, unique, OutHeader.unique);
  return b;
}

/** A success reply carrying `payload` (copied) or nothing. */
export function encodeReply(unique: bigint, payload?: Buffer | null): Buffer {
  const n = payload ? payload.length : 0;
  const b = allocReply(unique, n);
  if (payload && n) payload.copy(b, OutHeader.SIZE);
  return b;
}

/** The error of an encoded reply, as the positive errno (0 for success). */
export function replyErrno(b: Buffer): number {
  return -b.readInt32LE(OutHeader.error);
}

/** Shrink a reply to `len` bytes (a listing shorter than its buffer, InitOut of older minors), fixing the header. */
export function truncateReply(b: Buffer, len: number): Buffer {
  if (len >= b.length) return b;
  const t = b.subarray(0, len);
  t.writeUInt32LE(len, OutHeader.len);
  return t;
}

/** InitOut size: 24 bytes up to 7.22 (no time_gran/max_pages/flags2...), then 64. */
export const initOutSize = (minor: number): number => (minor <= 22 ? FUSE_COMPAT_22_INIT_OUT_SIZE : InitOut.SIZE);

/** Header fields of a request built by encodeRequest (tests, transports' self-tests). */
interface RequestHeader {
  opcode: number;
  unique: bigint;
  nodeid?: bigint;
  uid?: number;
  gid?: number;
  pid?: number;
  /** request extensions (a multiple of 8 bytes), appended after the parts and counted in total_extlen */
  ext?: Buffer;
}

/** The inverse of parseHeader: fuse_in_header + the given parts (struct bytes, names with their NUL, data). */
export function encodeRequest(h: RequestHeader, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(h.ext ? [...parts, h.ext] : parts);
  const b = Buffer.alloc(InHeader.SIZE + body.length);
  b.writeUInt16LE((h.ext?.length ?? 0) / 8, InHeader.total_extlen);
  b.writeUInt32LE(b.length, InHeader.len);
  b.writeUInt16LE((h.ext?.length ?? 0) / 8, InHeader.total_extlen);
  b.writeUInt32LE(h.opcode, InHeader.opcode);
  b.writeBigUInt64LE(h.unique, InHeader.unique);
  b.writeBigUInt64LE(h.nodeid ?? 0n, InHeader.nodeid);
  b.writeUInt32LE(h.uid ?? 0, InHeader.uid);
  b.writeUInt32LE(h.gid ?? 0, InHeader.gid);
  b.writeUInt32LE(h.pid ?? 0, InHeader.pid);
  body.copy(b, InHeader.SIZE);
  return b;
}

/** A FUSE_EXT_GROUPS extension as the kernel builds it (padded to 8 bytes). */
export function encodeGroupsExt(groups: readonly number[]): Buffer {
  const size = Math.ceil((ExtHeader.SIZE + 4 + 4 * groups.length) / 8) * 8;
  const b = Buffer.alloc(size);
  b.writeUInt32LE(size, ExtHeader.size);
  b.writeUInt32LE(FUSE_EXT_GROUPS, ExtHeader.type);
  b.writeUInt32LE(groups.length, ExtHeader.SIZE);
  groups.forEach((g, i) => b.writeUInt32LE(g, ExtHeader.SIZE + 4 + 4 * i));
  return b;
}

/** A name as the kernel sends it: the bytes and a NUL. */
export const cstr = (name: string | Buffer): Buffer => Buffer.concat([Buffer.from(name), Buffer.alloc(1)]);
