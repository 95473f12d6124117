import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

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
  private readonly key: KeyObject;
  private readonly fsId: Buffer;
  /** keys rotated out but still accepted by verify (a key file's grace period) */
  private readonly previous: KeyObject[];
  /** MACs made by seal() and mac() (verifies not counted): what sealing costs, for the stats */
  sealed = 0;

  constructor(key: Buffer, fsIdentity: Buffer, previousKeys: readonly Buffer[] = []) {
    for (const k of [key, ...previousKeys]) {
      if (k.length !== KEY_LEN) throw new RangeError(`sealing key must be ${KEY_LEN} bytes, got ${k.length}`);
    }
    // KeyObjects: importing a raw key on every MAC costs a third of it
    this.key = createSecretKey(Buffer.from(key));
    this.fsId = Buffer.from(fsIdentity);
    this.previous = previousKeys.map((k) => createSecretKey(Buffer.from(k)));
  }

  /** MAC over (domain | fs identity | purpose | type | handle bytes | extra). */
  seal(type: number, bytes: Buffer, extra?: Buffer, purpose = 'h'): Buffer {
    this.sealed++;
    return this.sealWith(this.key, type, bytes, extra, purpose);
  }

  private sealWith(key: KeyObject, type: number, bytes: Buffer, extra: Buffer | undefined, purpose: string): Buffer {
    const h = createHmac('sha256', key);
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
    if (timingSafeEqual(this.sealWith(this.key, type, bytes, extra, purpose), mac)) return true;
    // a seal made before the last rotations: accepted while its key is kept
    for (const k of this.previous) if (timingSafeEqual(this.sealWith(k, type, bytes, extra, purpose), mac)) return true;
    return false;
  }

  /** MAC of an arbitrary record (the sealed server state): same key, separate purpose. */
  mac(data: Buffer, purpose: string): Buffer {
    return this.seal(0, data, undefined, purpose);
  }

  verifyMac(data: Buffer, mac: Buffer, purpose: string): boolean {
    return this.verify(0, data, mac, undefined, purpose);
  }
}
