import { createHmac, timingSafeEqual } from 'node:crypto';

/** Domain separation prefix of every MAC handlefs computes (version 1). */
const DOMAIN = Buffer.from('handlefs-v1\0', 'latin1');
/** HMAC-SHA256 truncated to 16 bytes (128 bits): DESIGN.md asks for at least 16. */
export const SEAL_LEN = 16;
export const KEY_LEN = 32;

/**
 * Seals file handles with HMAC-SHA256 under the server key, bound to the filesystem's identity
 * (never to the mount id: mount ids change on every remount, persistent handles must not).
 */
export class Sealer {
  private readonly key: Buffer;
  private readonly fsId: Buffer;

  constructor(key: Buffer, fsIdentity: Buffer) {
    if (key.length !== KEY_LEN) throw new RangeError(`sealing key must be ${KEY_LEN} bytes, got ${key.length}`);
    this.key = Buffer.from(key);
    this.fsId = Buffer.from(fsIdentity);
  }

  /** MAC over (domain | fs identity | purpose | type | handle bytes | extra). */
  seal(type: number, bytes: Buffer, extra?: Buffer, purpose = 'h'): Buffer {
    const h = createHmac('sha256', this.key);
    const hdr = Buffer.allocUnsafe(12);
    hdr.writeUInt32LE(this.fsId.length, 0);
    hdr.writeInt32LE(type, 4);
    hdr.writeUInt32LE(bytes.length, 8);
    h.update(DOMAIN).update(purpose).update(hdr).update(this.fsId).update(bytes);
    if (extra) h.update(extra);
    return h.digest().subarray(0, SEAL_LEN);
  }

  /** Constant-time check of a seal; false for a wrong length, never a throw. */
  verify(type: number, bytes: Buffer, mac: Buffer, extra?: Buffer, purpose = 'h'): boolean {
    if (!Buffer.isBuffer(mac) || mac.length !== SEAL_LEN) return false;
    const want = this.seal(type, bytes, extra, purpose);
    return timingSafeEqual(want, mac);
  }

  /** MAC of an arbitrary record (tokens, state files): same key, separate purpose. */
  mac(data: Buffer, purpose: string): Buffer {
    return this.seal(0, data, undefined, purpose);
  }

  verifyMac(data: Buffer, mac: Buffer, purpose: string): boolean {
    return this.verify(0, data, mac, undefined, purpose);
  }
}
