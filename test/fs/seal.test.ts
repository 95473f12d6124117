import { describe, it, expect } from 'vitest';
import { createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Sealer, SEAL_LEN } from '../../src/handle/seal.js';
import { encodeState, decodeState, type ServerState } from '../../src/fs/export-table.js';
import { ephemeralKey, loadOrCreateKeys, rotateKeyFile, KeyFileError } from '../../src/handle/key.js';
import { tmpdir } from '../helpers/fs-fixture.js';
import { mulberry32 as prng } from '../helpers/prng.js';

describe('seals', () => {
  const fsId = Buffer.from('root-handle');
  it('are HMAC-SHA256 over the documented layout, truncated to 16 bytes (handles sealed by older versions still verify)', () => {
    const key = Buffer.alloc(32, 7);
    const bytes = Buffer.from('0123456789abcdef');
    const hdr = Buffer.alloc(12);
    hdr.writeUInt32LE(fsId.length, 0);
    hdr.writeInt32LE(1, 4);
    hdr.writeUInt32LE(bytes.length, 8);
    const want = createHmac('sha256', key).update(Buffer.from('handlefs-v1\0', 'latin1')).update('h').update(hdr).update(fsId).update(bytes).digest().subarray(0, 16);
    expect(new Sealer(key, fsId).seal(1, bytes).equals(want)).toBe(true);
  });
  it('verify accepts its own seal and rejects flipped bits, other keys, other fs, wrong lengths', () => {
    const key = ephemeralKey();
    const s = new Sealer(key, fsId);
    const bytes = Buffer.from('0123456789abcdef');
    const mac = s.seal(1, bytes);
    expect(mac.length).toBe(SEAL_LEN);
    expect(s.verify(1, bytes, mac)).toBe(true);
    expect(s.verify(2, bytes, mac)).toBe(false);
    for (let bit = 0; bit < mac.length * 8; bit++) {
      const m = Buffer.from(mac);
      m[bit >> 3]! ^= 1 << (bit & 7);
      expect(s.verify(1, bytes, m)).toBe(false);
    }
    const b2 = Buffer.from(bytes);
    b2[3]! ^= 0x80;
    expect(s.verify(1, b2, mac)).toBe(false);
    expect(new Sealer(ephemeralKey(), fsId).verify(1, bytes, mac)).toBe(false);
    expect(new Sealer(key, Buffer.from('other-fs')).verify(1, bytes, mac)).toBe(false);
    expect(s.verify(1, bytes, mac.subarray(0, 15))).toBe(false);
    expect(s.verify(1, bytes, Buffer.concat([mac, Buffer.alloc(1)]))).toBe(false);
    expect(s.verify(1, bytes, 'not a buffer' as unknown as Buffer)).toBe(false);
  });

  it('refuses a key of the wrong size', () => {
    expect(() => new Sealer(Buffer.alloc(31), fsId)).toThrow(RangeError);
  });
});

describe('sealed state', () => {
  const key = ephemeralKey();
  const s = new Sealer(key, Buffer.from('fs'));
  const st: ServerState = {
    nextNodeid: 43n,
    generation: 7n,
    records: [{ nodeid: 42n, generation: 7n, parent: 1n, name: Buffer.from('f'), type: 0o100000, handleType: 1, handle: Buffer.from('abcdefgh'), seal: s.seal(1, Buffer.from('abcdefgh')), nlookup: 2 }],
    handles: [{ fh: 3n, nodeid: 42n, flags: 2, kind: 'file' }],
  };
  const good = encodeState(s, st);

  it('round-trips', () => {
    const r = decodeState(s, good);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.state).toEqual(st);
  });

  it('rejects truncated, oversized, wrong-version, bit-flipped, other-key and random input with an errno, never a throw', () => {
    const bad: Buffer[] = [];
    for (let n = 0; n < good.length; n++) bad.push(good.subarray(0, n));
    bad.push(Buffer.concat([good, Buffer.alloc(1)]));
    bad.push(Buffer.alloc(good.length + 1));
    const v = Buffer.from(good);
    v[7] = 0x32; // "HFSTATE2"
    bad.push(v);
    for (let bit = 0; bit < good.length * 8; bit++) {
      const f = Buffer.from(good);
      f[bit >> 3]! ^= 1 << (bit & 7);
      bad.push(f);
    }
    bad.push(encodeState(new Sealer(ephemeralKey(), Buffer.from('fs')), st));
    const rnd = prng(1234);
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(rnd() * 200);
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
      if (len > 8 && rnd() < 0.5) b.write('HFSTATE1', 0, 'latin1');
      bad.push(b);
    }
    for (const b of bad) {
      let r: ReturnType<typeof decodeState> | undefined;
      expect(() => {
        r = decodeState(s, b);
      }).not.toThrow();
      expect(r!.ok).toBe(false);
      if (!r!.ok) expect([22, 116]).toContain(r!.errno); // EINVAL or ESTALE
    }
    for (const weird of [null, undefined, 42, 'HFSTATE1', {}, []]) expect(decodeState(s, weird).ok).toBe(false);
  });
});

describe('key file', () => {
  it('is created 0600 and read back; refused when others can read it, when a symlink, or of the wrong size', () => {
    const d = tmpdir();
    try {
      const p = path.join(d, 'key');
      const created = loadOrCreateKeys(p);
      expect(created.length).toBe(1);
      const k1 = created[0]!;
      expect(k1.length).toBe(32);
      expect(fs.statSync(p).mode & 0o777).toBe(0o600);
      expect(loadOrCreateKeys(p)[0]!.equals(k1)).toBe(true);
      fs.chmodSync(p, 0o644);
      expect(() => loadOrCreateKeys(p)).toThrow(/group or others.*chmod 600/);
      fs.chmodSync(p, 0o600);
      fs.symlinkSync(p, path.join(d, 'link'));
      expect(() => loadOrCreateKeys(path.join(d, 'link'))).toThrow(KeyFileError);
      fs.writeFileSync(path.join(d, 'short'), Buffer.alloc(16), { mode: 0o600 });
      expect(() => loadOrCreateKeys(path.join(d, 'short'))).toThrow(/exactly 32 bytes/);
      fs.writeFileSync(path.join(d, 'long'), Buffer.alloc(33), { mode: 0o600 });
      expect(() => loadOrCreateKeys(path.join(d, 'long'))).toThrow(/exactly 32 bytes/);
      fs.writeFileSync(path.join(d, 'nine'), Buffer.alloc(32 * 9), { mode: 0o600 });
      expect(() => loadOrCreateKeys(path.join(d, 'nine'))).toThrow(/1 to 8 keys/);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('key rotation', () => {
  it('a rotated key file seals with the new key and still verifies under the kept ones, until they are rotated out', () => {
    const d = tmpdir();
    try {
      const p = path.join(d, 'key');
      const [k0] = loadOrCreateKeys(p);
      const fsId = Buffer.from('fs');
      const old = new Sealer(k0!, fsId);
      const state = encodeState(old, { nextNodeid: 8n, generation: 1n, records: [] });
      const mac = old.seal(1, Buffer.from('handle'));
      expect(rotateKeyFile(p, 1)).toBe(2);
      expect(fs.statSync(p).mode & 0o777).toBe(0o600);
      const keys = loadOrCreateKeys(p);
      expect(keys.length).toBe(2);
      expect(keys[1]!.equals(k0!)).toBe(true);
      const now = new Sealer(keys[0]!, fsId, keys.slice(1));
      expect(now.seal(1, Buffer.from('handle')).equals(mac)).toBe(false); // new seals use the new key
      expect(now.verify(1, Buffer.from('handle'), mac)).toBe(true); // grace: the old seal still verifies
      expect(decodeState(now, state).ok).toBe(true);
      // two more rotations keeping one: k0 is gone, its seals are refused
      rotateKeyFile(p, 1);
      rotateKeyFile(p, 1);
      const later = loadOrCreateKeys(p);
      const after = new Sealer(later[0]!, fsId, later.slice(1));
      expect(after.verify(1, Buffer.from('handle'), mac)).toBe(false);
      const r = decodeState(after, state);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.errno).toBe(116); // ESTALE
      expect(() => rotateKeyFile(p, 8)).toThrow(KeyFileError);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
