import { E } from '../errors.js';
import type { Sealer } from './seal.js';
import { SEAL_LEN } from './seal.js';

/**
 * A sealed token names an inode outside the process (persistent client handles, state files,
 * migration). Layout, version 1 (little endian):
 *   0 magic "HF" | 2 version u8 | 3 flags u8 (0) | 4 handle type i32 | 8 nodeid u64 |
 *  16 generation u64 | 24 handle length u16 | 26 handle bytes | 26+n MAC (16 bytes)
 * The MAC covers every byte before it. The decoder checks length, magic, version, flags and MAC
 * before it returns anything; bad input is an errno, never a throw.
 */
export const TOKEN_VERSION = 1;
/** MAX_HANDLE_SZ of the kernel */
export const MAX_HANDLE_BYTES = 128;
const HDR = 26;
const MAGIC0 = 0x48;
const MAGIC1 = 0x46;
const PURPOSE = 'token';

export interface TokenFields {
  nodeid: bigint;
  generation: bigint;
  handleType: number;
  handle: Buffer;
}

export type DecodeResult = { ok: true; value: TokenFields } | { ok: false; errno: number; reason: string };

export function encodeToken(sealer: Sealer, t: TokenFields): Buffer {
  if (t.handle.length > MAX_HANDLE_BYTES) throw new RangeError('file handle too large');
  const n = t.handle.length;
  const buf = Buffer.alloc(HDR + n + SEAL_LEN);
  buf[0] = MAGIC0;
  buf[1] = MAGIC1;
  buf[2] = TOKEN_VERSION;
  buf[3] = 0;
  buf.writeInt32LE(t.handleType, 4);
  buf.writeBigUInt64LE(t.nodeid, 8);
  buf.writeBigUInt64LE(t.generation, 16);
  buf.writeUInt16LE(n, 24);
  t.handle.copy(buf, HDR);
  sealer.mac(buf.subarray(0, HDR + n), PURPOSE).copy(buf, HDR + n);
  return buf;
}

export function decodeToken(sealer: Sealer, buf: unknown): DecodeResult {
  if (!Buffer.isBuffer(buf)) return { ok: false, errno: E.EINVAL, reason: 'not a buffer' };
  if (buf.length < HDR + SEAL_LEN) return { ok: false, errno: E.EINVAL, reason: 'truncated' };
  if (buf.length > HDR + MAX_HANDLE_BYTES + SEAL_LEN) return { ok: false, errno: E.EINVAL, reason: 'oversized' };
  if (buf[0] !== MAGIC0 || buf[1] !== MAGIC1) return { ok: false, errno: E.EINVAL, reason: 'bad magic' };
  if (buf[2] !== TOKEN_VERSION) return { ok: false, errno: E.EINVAL, reason: `unsupported version ${buf[2]}` };
  if (buf[3] !== 0) return { ok: false, errno: E.EINVAL, reason: 'unknown flags' };
  const n = buf.readUInt16LE(24);
  if (buf.length !== HDR + n + SEAL_LEN) return { ok: false, errno: E.EINVAL, reason: 'length mismatch' };
  const body = buf.subarray(0, HDR + n);
  const mac = buf.subarray(HDR + n);
  // a MAC failure means forged, corrupted or sealed under another key: the handle is stale to us
  if (!sealer.verifyMac(body, mac, PURPOSE)) return { ok: false, errno: E.ESTALE, reason: 'seal does not verify' };
  return {
    ok: true,
    value: {
      handleType: buf.readInt32LE(4),
      nodeid: buf.readBigUInt64LE(8),
      generation: buf.readBigUInt64LE(16),
      handle: Buffer.from(buf.subarray(HDR, HDR + n)),
    },
  };
}
