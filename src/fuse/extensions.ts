/**
 * Request extensions (kernel fuse.h, FUSE_REQUEST_EXT): `total_extlen` 8-byte units at the end of
 * a request, after its names, hold records that each start with struct fuse_ext_header
 * {size, type}; `size` counts the header and is a multiple of 8. Types 0..FUSE_MAX_NR_SECCTX are a
 * struct fuse_secctx_header {size, nr_secctx} (the type is the count of security contexts),
 * FUSE_EXT_GROUPS a struct fuse_supp_groups.
 *
 * A security context (FUSE_SECURITY_CTX, sent with CREATE, MKDIR, MKNOD, SYMLINK and TMPFILE) is
 * struct fuse_secctx {size, padding}, the xattr name with its NUL, then `size` value bytes, padded
 * to 8 (FUSE_REC_ALIGN). Every length is checked against the record it sits in: a malformed
 * extension is a ProtocolError (EINVAL), never a read out of bounds.
 */
import { E, ProtocolError } from '../errors.js';
import type { SecurityLabel } from '../fs/types.js';
import { XATTR_SIZE_MAX } from '../sys/constants.js';
import { ExtHeader, FUSE_EXT_GROUPS } from './abi.js';

export { FUSE_EXT_GROUPS };
export const FUSE_MAX_NR_SECCTX = 31;
const EXT_HEADER_SIZE = ExtHeader.SIZE;
const SECCTX_SIZE = 8;
/** longest xattr name (XATTR_NAME_MAX) */
const XATTR_NAME_MAX = 255;

/** One extension record: its type and the bytes after its header (a view into the request). */
export interface ExtensionRecord {
  type: number;
  body: Buffer;
}

const bad = (what: string): ProtocolError => new ProtocolError(`request extension: ${what}`, E.EINVAL);
const align8 = (n: number): number => (n + 7) & ~7;

/** The records of the extension area buf[start, end). */
export function extensionRecords(buf: Buffer, start: number, end: number): ExtensionRecord[] {
  const out: ExtensionRecord[] = [];
  let off = start;
  while (off < end) {
    if (end - off < EXT_HEADER_SIZE) throw bad('header cut short');
    const size = buf.readUInt32LE(off);
    if (size < EXT_HEADER_SIZE || size % 8 !== 0 || size > end - off) throw bad('record size out of bounds');
    out.push({ type: buf.readUInt32LE(off + 4), body: buf.subarray(off + EXT_HEADER_SIZE, off + size) });
    off += size;
  }
  return out;
}

/** The groups of a FUSE_EXT_GROUPS record (struct fuse_supp_groups: u32 count, then the gids). */
export function supplementaryGroups(rec: ExtensionRecord): number[] {
  const b = rec.body;
  const n = b.length >= 4 ? b.readUInt32LE(0) : -1;
  if (n < 0 || n > (b.length - 4) / 4) throw bad('supplementary groups overrun their record');
  const groups: number[] = [];
  for (let i = 0; i < n; i++) groups.push(b.readUInt32LE(4 + 4 * i));
  return groups;
}

/**
 * The security context among the extension records of buf[start, end), or null when none is
 * sent (or the kernel sent a header with no context: no LSM labels new files). More than one
 * context, or a second security record, is refused: the kernel sends at most one.
 */
export function securityContext(buf: Buffer, start: number, end: number): SecurityLabel | null {
  let found: SecurityLabel | null = null;
  let seen = false;
  for (const rec of extensionRecords(buf, start, end)) {
    if (rec.type > FUSE_MAX_NR_SECCTX) continue;
    if (seen) throw bad('more than one security context record');
    seen = true;
    if (rec.type > 1) throw bad('more than one security context');
    if (rec.type === 1) found = readSecctx(rec.body);
  }
  return found;
}

function readSecctx(b: Buffer): SecurityLabel {
  if (b.length < SECCTX_SIZE) throw bad('security context cut short');
  const valueLen = b.readUInt32LE(0);
  const nul = b.indexOf(0, SECCTX_SIZE);
  if (nul < 0) throw bad('security context name is not NUL-terminated');
  const nameLen = nul - SECCTX_SIZE;
  if (nameLen === 0 || nameLen > XATTR_NAME_MAX) throw bad('security context name length out of bounds');
  if (valueLen > XATTR_SIZE_MAX || valueLen > b.length - (nul + 1)) throw bad('security context value length out of bounds');
  if (align8(SECCTX_SIZE + nameLen + 1 + valueLen) > b.length) throw bad('security context runs past its record');
  return { name: b.subarray(SECCTX_SIZE, nul), value: b.subarray(nul + 1, nul + 1 + valueLen) };
}

/** A security context extension as the kernel builds it (tests, transports' self-tests). */
export function encodeSecurityLabel(ctx: SecurityLabel | null): Buffer {
  if (ctx === null) {
    const h = Buffer.alloc(EXT_HEADER_SIZE);
    h.writeUInt32LE(EXT_HEADER_SIZE, 0);
    return h;
  }
  const entry = align8(SECCTX_SIZE + ctx.name.length + 1 + ctx.value.length);
  const b = Buffer.alloc(EXT_HEADER_SIZE + entry);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt32LE(1, 4);
  b.writeUInt32LE(ctx.value.length, EXT_HEADER_SIZE);
  ctx.name.copy(b, EXT_HEADER_SIZE + SECCTX_SIZE);
  ctx.value.copy(b, EXT_HEADER_SIZE + SECCTX_SIZE + ctx.name.length + 1);
  return b;
}
