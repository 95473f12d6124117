/**
 * Adversarial angles on sealed tokens (src/handle/token.ts decodeToken) beyond the unit fuzz in
 * test/fs/seal.test.ts: replay under a rotated key (key file recreated), replay against another
 * filesystem identity, splices of body and MAC from two valid tokens, MACs of another purpose
 * (a handle seal or a state-file MAC offered as a token MAC), correctly sealed tokens of an
 * unknown version or flags, lying length fields, appended bytes, buffers that are views into a
 * larger allocation, huge and non-Buffer inputs. Every bad input is an errno (EINVAL for
 * malformed, ESTALE for a seal that does not verify), never a throw and never a value.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadOrCreateKey, ephemeralKey } from '../../src/handle/key.js';
import { SEAL_LEN, Sealer } from '../../src/handle/seal.js';
import { decodeToken, encodeToken, MAX_HANDLE_BYTES, type TokenFields } from '../../src/handle/token.js';

const EINVAL = 22;
const ESTALE = 116;
const HDR = 26;
const FS = Buffer.from('fs-identity-A');

const fields = (nodeid: bigint, handle: Buffer, generation = 1n, handleType = 1): TokenFields => ({ nodeid, generation, handleType, handle });

function expectRefused(s: Sealer, buf: unknown, errno: number, why?: string): void {
  let r: ReturnType<typeof decodeToken> | undefined;
  expect(() => (r = decodeToken(s, buf)), why).not.toThrow();
  expect(r!.ok, why).toBe(false);
  if (!r!.ok) expect(r!.errno, `${why}: ${r!.reason}`).toBe(errno);
}

/** rewrite the MAC so that the token verifies under `s` (what only the key holder can do) */
function reseal(s: Sealer, buf: Buffer): Buffer {
  const b = Buffer.from(buf);
  const n = b.length - SEAL_LEN;
  s.mac(b.subarray(0, n), 'token').copy(b, n);
  return b;
}

describe('tokens: adversarial', () => {
  it('replay under a rotated key file: every old token is ESTALE, new ones verify only under the new key', () => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'hfs-tok-'));
    try {
      const keyFile = join(dir, 'key');
      const a = new Sealer(loadOrCreateKey(keyFile), FS);
      const old = Array.from({ length: 50 }, (_, i) => encodeToken(a, fields(BigInt(i + 2), Buffer.from(`handle-${i}`), BigInt(i))));
      // same file read again: same key, tokens still good (a restart, not a rotation)
      const a2 = new Sealer(loadOrCreateKey(keyFile), FS);
      for (const t of old) expect(decodeToken(a2, t).ok).toBe(true);
      // rotation: the key file is replaced
      fs.rmSync(keyFile);
      const b = new Sealer(loadOrCreateKey(keyFile), FS);
      for (const t of old) expectRefused(b, t, ESTALE, 'old token under the new key');
      const fresh = encodeToken(b, fields(2n, Buffer.from('handle-0'), 0n));
      expect(decodeToken(b, fresh).ok).toBe(true);
      expectRefused(a, fresh, ESTALE, 'new token under the old key');
      // the same fields sealed under both keys differ only in the MAC
      expect(fresh.subarray(0, fresh.length - SEAL_LEN)).toEqual(old[0]!.subarray(0, old[0]!.length - SEAL_LEN));
      expect(fresh.subarray(-SEAL_LEN)).not.toEqual(old[0]!.subarray(-SEAL_LEN));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replay against another filesystem identity with the same key is ESTALE', () => {
    const key = ephemeralKey();
    const a = new Sealer(key, FS);
    const other = new Sealer(key, Buffer.from('fs-identity-B'));
    const t = encodeToken(a, fields(7n, Buffer.from('abcdefgh')));
    expect(decodeToken(a, t).ok).toBe(true);
    expectRefused(other, t, ESTALE);
  });

  it('splices of two valid tokens (body of one, MAC of the other) are ESTALE', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const toks = [1n, 2n, 3n, 1n << 40n].flatMap((n) => [Buffer.from('handle01'), Buffer.from('handle02')].map((h) => encodeToken(s, fields(n, h))));
    for (const x of toks) {
      for (const y of toks) {
        if (x === y) continue;
        const spliced = Buffer.concat([x.subarray(0, x.length - SEAL_LEN), y.subarray(y.length - SEAL_LEN)]);
        if (spliced.equals(x)) continue;
        expectRefused(s, spliced, ESTALE, 'splice');
      }
    }
  });

  it('a MAC made for another purpose (handle seal, state record) does not verify as a token MAC', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeToken(s, fields(9n, Buffer.from('0123456789ab')));
    const body = good.subarray(0, good.length - SEAL_LEN);
    for (const mac of [s.seal(0, body), s.seal(1, body), s.mac(body, 'state'), s.mac(body, 'record'), s.mac(body, ''), s.seal(0, body, undefined, 'h')]) {
      expectRefused(s, Buffer.concat([body, mac.subarray(0, SEAL_LEN)]), ESTALE, 'cross-purpose MAC');
    }
    // and the other way: a token MAC is not a handle seal over the same bytes
    expect(s.verify(0, body, good.subarray(-SEAL_LEN))).toBe(false);
    expect(s.verify(1, Buffer.from('0123456789ab'), good.subarray(-SEAL_LEN))).toBe(false);
  });

  it('correctly sealed tokens of an unknown version or with unknown flags are refused (EINVAL)', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeToken(s, fields(9n, Buffer.from('abcd')));
    for (const [off, val] of [[2, 0], [2, 2], [2, 255], [3, 1], [3, 0x80]] as const) {
      const b = Buffer.from(good);
      b[off] = val;
      expectRefused(s, reseal(s, b), EINVAL, `byte ${off} = ${val}`);
    }
  });

  it('lying length fields, appended bytes and short MACs are refused before the MAC is trusted', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeToken(s, fields(9n, Buffer.from('abcdefgh')));
    for (const n of [0, 1, 7, 9, 16, 128, 129, 0xffff]) {
      const b = Buffer.from(good);
      b.writeUInt16LE(n, 24);
      expectRefused(s, b, EINVAL, `length field ${n}`);
    }
    // a handle one byte longer with the length field to match, MAC unchanged: the MAC covers it
    const longer = Buffer.concat([good.subarray(0, HDR + 8), Buffer.from([0x41]), good.subarray(HDR + 8)]);
    longer.writeUInt16LE(9, 24);
    expectRefused(s, longer, ESTALE, 'extended handle');
    // appended bytes (length-extension style), truncated and zero/one MACs
    expectRefused(s, Buffer.concat([good, Buffer.from('extra')]), EINVAL, 'appended');
    expectRefused(s, good.subarray(0, good.length - 8), EINVAL, 'short MAC');
    for (const fill of [0x00, 0xff]) {
      const b = Buffer.from(good);
      b.fill(fill, b.length - SEAL_LEN);
      expectRefused(s, b, ESTALE, `MAC all ${fill}`);
    }
  });

  it('empty and maximal handles round-trip; one byte over the maximum is refused', () => {
    const s = new Sealer(ephemeralKey(), FS);
    for (const n of [0, 1, MAX_HANDLE_BYTES]) {
      const h = Buffer.alloc(n, 0x5a);
      const r = decodeToken(s, encodeToken(s, fields(2n ** 64n - 1n, h, 2n ** 64n - 1n, -1)));
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.value).toEqual(fields(2n ** 64n - 1n, h, 2n ** 64n - 1n, -1));
    }
    expect(() => encodeToken(s, fields(1n, Buffer.alloc(MAX_HANDLE_BYTES + 1)))).toThrow(RangeError);
    const forged = Buffer.alloc(HDR + MAX_HANDLE_BYTES + 1 + SEAL_LEN);
    forged.write('HF', 0);
    forged[2] = 1;
    forged.writeUInt16LE(MAX_HANDLE_BYTES + 1, 24);
    expectRefused(s, reseal(s, forged), EINVAL, 'oversized handle, sealed');
  });

  it('a token inside a larger allocation decodes; the result does not alias the input', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeToken(s, fields(5n, Buffer.from('aliasing')));
    const big = Buffer.alloc(4096, 0xee);
    good.copy(big, 1001);
    const view = big.subarray(1001, 1001 + good.length);
    const r = decodeToken(s, view);
    expect(r.ok).toBe(true);
    big.fill(0, 1001 + HDR, 1001 + HDR + 8);
    if (r.ok) expect(r.value.handle.toString()).toBe('aliasing');
    // a valid replay decodes to the same fields every time: replay protection is the identity
    // check that follows (handle compare, generation), not the decoder
    for (let i = 0; i < 3; i++) expect(decodeToken(s, good)).toEqual(decodeToken(s, Buffer.from(good)));
  });

  it('huge and non-Buffer inputs are EINVAL at once, never a throw', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeToken(s, fields(5n, Buffer.from('abcd')));
    const t0 = process.hrtime.bigint();
    expectRefused(s, Buffer.alloc(16 << 20, 0x41), EINVAL, 'huge');
    expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(100);
    for (const x of [new Uint8Array(good), good.buffer, new DataView(good.buffer), Array.from(good), good.toString('latin1'), good.toString('base64'), { length: good.length, 0: 0x48 }, Symbol('t'), () => good, 1n, NaN, true]) {
      expectRefused(s, x, EINVAL, typeof x);
    }
  });
});
