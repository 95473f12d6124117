/**
 * Adversarial angles on the sealed server state (src/fs/export-table.ts decodeState: the state
 * files, the streamed one-record states and the upgrade hand-over) beyond the unit fuzz in
 * test/fs/seal.test.ts: replay under a rotated key (key file recreated), replay against another
 * filesystem identity, splices of body and MAC from two valid states, MACs of another purpose
 * (a handle seal or a MAC of another purpose offered as a state MAC), correctly sealed states of
 * an unknown version or handle kind, lying length fields, appended bytes, buffers that are views
 * into a larger allocation, huge and non-Buffer inputs. Every bad input is an errno (EINVAL for
 * malformed, ESTALE for a seal that does not verify), never a throw and never a value.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeState, encodeState, type InodeRecord, type ServerState } from '../../src/fs/export-table.js';
import { loadOrCreateKeys, ephemeralKey } from '../../src/handle/key.js';
import { SEAL_LEN, Sealer } from '../../src/handle/seal.js';
import { MAX_HANDLE_SZ, NAME_MAX, S_IFREG } from '../../src/sys/constants.js';

const EINVAL = 22;
const ESTALE = 116;
/** "HFSTATE1" | u32 count | u64 nextNodeid | u64 generation */
const HDR = 28;
/** fixed part of a record, before its handle bytes */
const REC = 38;
const FS = Buffer.from('fs-identity-A');

function record(nodeid: bigint, handle: Buffer, generation = 1n, handleType = 1, name = Buffer.from(`n${nodeid}`)): InodeRecord {
  return { nodeid, generation, parent: 1n, name, type: S_IFREG, handleType, handle, seal: Buffer.alloc(SEAL_LEN, 0x5e), nlookup: 1 };
}

const state = (records: InodeRecord[], handles?: ServerState['handles']): ServerState => ({ nextNodeid: 1000n, generation: 3n, records, handles });

function expectRefused(s: Sealer, buf: unknown, errno: number, why?: string): void {
  let r: ReturnType<typeof decodeState> | undefined;
  expect(() => (r = decodeState(s, buf)), why).not.toThrow();
  expect(r!.ok, why).toBe(false);
  if (!r!.ok) expect(r!.errno, `${why}: ${r!.reason}`).toBe(errno);
}

/** rewrite the MAC so that the state verifies under `s` (what only the key holder can do) */
function reseal(s: Sealer, buf: Buffer): Buffer {
  const b = Buffer.from(buf);
  const n = b.length - SEAL_LEN;
  s.mac(b.subarray(0, n), 'state').copy(b, n);
  return b;
}

describe('sealed state: adversarial', () => {
  it('replay under a rotated key file: every old state is ESTALE, new ones verify only under the new key', () => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'hfs-state-'));
    try {
      const keyFile = join(dir, 'key');
      const a = new Sealer(loadOrCreateKeys(keyFile)[0]!, FS);
      const old = Array.from({ length: 50 }, (_, i) => encodeState(a, state([record(BigInt(i + 2), Buffer.from(`handle-${i}`), BigInt(i))])));
      // same file read again: same key, states still good (a restart, not a rotation)
      const a2 = new Sealer(loadOrCreateKeys(keyFile)[0]!, FS);
      for (const t of old) expect(decodeState(a2, t).ok).toBe(true);
      // rotation: the key file is replaced
      fs.rmSync(keyFile);
      const b = new Sealer(loadOrCreateKeys(keyFile)[0]!, FS);
      for (const t of old) expectRefused(b, t, ESTALE, 'old state under the new key');
      const fresh = encodeState(b, state([record(2n, Buffer.from('handle-0'), 0n)]));
      expect(decodeState(b, fresh).ok).toBe(true);
      expectRefused(a, fresh, ESTALE, 'new state under the old key');
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
    const t = encodeState(a, state([record(7n, Buffer.from('abcdefgh'))]));
    expect(decodeState(a, t).ok).toBe(true);
    expectRefused(other, t, ESTALE);
  });

  it('splices of two valid states (body of one, MAC of the other) are ESTALE', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const all = [1n, 2n, 3n, 1n << 40n].flatMap((n) => [Buffer.from('handle01'), Buffer.from('handle02')].map((h) => encodeState(s, state([record(n, h)]))));
    for (const x of all) {
      for (const y of all) {
        if (x === y) continue;
        const spliced = Buffer.concat([x.subarray(0, x.length - SEAL_LEN), y.subarray(y.length - SEAL_LEN)]);
        if (spliced.equals(x)) continue;
        expectRefused(s, spliced, ESTALE, 'splice');
      }
    }
  });

  it('a MAC made for another purpose (handle seal, token, record) does not verify as a state MAC', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const handle = Buffer.from('0123456789ab');
    const good = encodeState(s, state([record(9n, handle)]));
    const body = good.subarray(0, good.length - SEAL_LEN);
    for (const mac of [s.seal(0, body), s.seal(1, body), s.mac(body, 'token'), s.mac(body, 'record'), s.mac(body, ''), s.seal(0, body, undefined, 'h')]) {
      expectRefused(s, Buffer.concat([body, mac.subarray(0, SEAL_LEN)]), ESTALE, 'cross-purpose MAC');
    }
    // and the other way: a state MAC is not a handle seal over the same bytes
    expect(s.verify(0, body, good.subarray(-SEAL_LEN))).toBe(false);
    expect(s.verify(1, handle, good.subarray(-SEAL_LEN))).toBe(false);
  });

  it('correctly sealed states of an unknown version or magic, or with an unknown handle kind, are refused (EINVAL)', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeState(s, state([record(9n, Buffer.from('abcd'))], [{ fh: 5n, nodeid: 9n, flags: 2, kind: 'dir' }]));
    const kindAt = good.length - SEAL_LEN - 1;
    for (const [off, val] of [[7, 0x30], [7, 0x32], [7, 0xff], [0, 0x68], [5, 0], [kindAt, 2], [kindAt, 0xff]] as const) {
      const b = Buffer.from(good);
      b[off] = val;
      expectRefused(s, reseal(s, b), EINVAL, `byte ${off} = ${val}`);
    }
  });

  it('lying length fields: ESTALE unsealed; sealed by the key holder, refused (EINVAL) or another well-formed state, never a throw', () => {
    const s = new Sealer(Buffer.alloc(32, 7), FS);
    const h = Buffer.from('abcdefgh');
    const good = encodeState(s, state([record(9n, h), record(10n, Buffer.from('ijklmnop'), 1n, 1, Buffer.from('file-10'))], [{ fh: 5n, nodeid: 9n, flags: 2, kind: 'file' }]));
    const handlesAt = good.length - SEAL_LEN - 25;
    const fields = [
      { what: 'record count', off: 8, size: 4, over: [3, 10_000_001, 0xffffffff] },
      { what: 'handle length', off: HDR + 36, size: 2, over: [MAX_HANDLE_SZ + 1, 0xffff] },
      { what: 'name length', off: HDR + REC + h.length, size: 2, over: [NAME_MAX + 1, 0xffff] },
      { what: 'handle count', off: handlesAt, size: 4, over: [2, 0xffffffff] },
    ];
    for (const f of fields) {
      const write = (b: Buffer, v: number): void => void (f.size === 4 ? b.writeUInt32LE(v, f.off) : b.writeUInt16LE(v, f.off));
      // past the structure or the format's limits: refused
      for (const v of f.over) {
        const b = Buffer.from(good);
        write(b, v);
        expectRefused(s, b, ESTALE, `${f.what} ${v}, unsealed`);
        expectRefused(s, reseal(s, b), EINVAL, `${f.what} ${v}, sealed`);
      }
      // every other value of a 16-bit field (a sample of a 32-bit one): never a throw, never a read
      // past the buffer; what decodes is well-formed
      const values = f.size === 2 ? Array.from({ length: 0x10000 }, (_, i) => i) : [0, 1, 4, 100, 9_999_999, 10_000_000];
      const wrong: string[] = [];
      for (const v of values) {
        const b = Buffer.from(good);
        write(b, v);
        try {
          const r = decodeState(s, reseal(s, b));
          if (!r.ok && r.errno !== EINVAL) wrong.push(`${v}: errno ${r.errno} (${r.reason})`);
          if (r.ok && r.state.records.some((x) => x.handle.length > MAX_HANDLE_SZ || x.name.length > NAME_MAX || x.seal === null || x.seal.length !== SEAL_LEN)) {
            wrong.push(`${v}: decoded an out-of-bounds record`);
          }
        } catch (e) {
          wrong.push(`${v}: threw ${String(e)}`);
        }
      }
      expect(wrong, f.what).toEqual([]);
    }
    // a handle one byte longer with the length field to match, MAC unchanged: the MAC covers it
    const longer = Buffer.concat([good.subarray(0, HDR + REC + 8), Buffer.from([0x41]), good.subarray(HDR + REC + 8)]);
    longer.writeUInt16LE(9, HDR + 36);
    expectRefused(s, longer, ESTALE, 'extended handle');
    // appended bytes (length-extension style), truncated and zero/one MACs
    expectRefused(s, Buffer.concat([good, Buffer.from('extra')]), ESTALE, 'appended');
    expectRefused(s, reseal(s, Buffer.concat([good.subarray(0, good.length - SEAL_LEN), Buffer.from('extra'), good.subarray(-SEAL_LEN)])), EINVAL, 'appended, sealed');
    expectRefused(s, good.subarray(0, good.length - 8), ESTALE, 'short MAC');
    for (const fill of [0x00, 0xff]) {
      const b = Buffer.from(good);
      b.fill(fill, b.length - SEAL_LEN);
      expectRefused(s, b, ESTALE, `MAC all ${fill}`);
    }
  });

  it('empty and maximal handles and names round-trip; one byte over either maximum is refused', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const max = 2n ** 64n - 1n;
    for (const n of [0, 1, MAX_HANDLE_SZ]) {
      for (const m of [0, 1, NAME_MAX]) {
        const r0: InodeRecord = { ...record(max, Buffer.alloc(n, 0x5a), max, -1, Buffer.alloc(m, 0x6e)), parent: max, type: 0xffffffff, nlookup: 0xffffffff };
        const st: ServerState = { nextNodeid: max, generation: max, records: [r0], handles: [{ fh: max, nodeid: max, flags: 0xffffffff, kind: 'dir' }] };
        const r = decodeState(s, encodeState(s, st));
        expect(r.ok).toBe(true);
        if (r.ok) expect(r.state).toEqual(st);
      }
    }
    const forge = (handleLen: number, nameLen: number): Buffer => {
      const b = Buffer.alloc(HDR + REC + handleLen + 2 + nameLen + SEAL_LEN + SEAL_LEN);
      b.write('HFSTATE1', 0, 'latin1');
      b.writeUInt32LE(1, 8);
      b.writeUInt16LE(handleLen, HDR + 36);
      b.writeUInt16LE(nameLen, HDR + REC + handleLen);
      return reseal(s, b);
    };
    expect(decodeState(s, forge(MAX_HANDLE_SZ, NAME_MAX)).ok).toBe(true);
    expectRefused(s, forge(MAX_HANDLE_SZ + 1, 1), EINVAL, 'oversized handle, sealed');
    expectRefused(s, forge(1, NAME_MAX + 1), EINVAL, 'oversized name, sealed');
    // and what the decoder refuses, the encoder never writes
    for (const [n, m] of [[MAX_HANDLE_SZ + 1, 1], [1, NAME_MAX + 1]] as const) {
      const rec = record(1n, Buffer.alloc(n, 1), 1n, 1, Buffer.alloc(m, 0x6e));
      expect(() => encodeState(s, { nextNodeid: 2n, generation: 1n, records: [rec] })).toThrow(RangeError);
    }
  });

  it('a state inside a larger allocation decodes; the result does not alias the input', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeState(s, state([record(5n, Buffer.from('aliasing'))]));
    const big = Buffer.alloc(4096, 0xee);
    good.copy(big, 1001);
    const view = big.subarray(1001, 1001 + good.length);
    const r = decodeState(s, view);
    expect(r.ok).toBe(true);
    big.fill(0, 1001 + HDR, 1001 + good.length);
    if (r.ok) {
      expect(r.state.records[0]!.handle.toString()).toBe('aliasing');
      expect(r.state.records[0]!.name.toString()).toBe('n5');
      expect(r.state.records[0]!.seal).toEqual(Buffer.alloc(SEAL_LEN, 0x5e));
    }
    // a valid replay decodes to the same fields every time: replay protection is the identity
    // check that follows (handle compare, generation), not the decoder
    for (let i = 0; i < 3; i++) expect(decodeState(s, good)).toEqual(decodeState(s, Buffer.from(good)));
  });

  it('huge and non-Buffer inputs are EINVAL at once, never a throw', () => {
    const s = new Sealer(ephemeralKey(), FS);
    const good = encodeState(s, state([record(5n, Buffer.from('abcd'))]));
    const t0 = process.hrtime.bigint();
    expectRefused(s, Buffer.alloc(16 << 20, 0x41), EINVAL, 'huge');
    expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(100);
    for (const x of [new Uint8Array(good), good.buffer, new DataView(good.buffer), Array.from(good), good.toString('latin1'), good.toString('base64'), { length: good.length, 0: 0x48 }, Symbol('t'), () => good, 1n, NaN, true]) {
      expectRefused(s, x, EINVAL, typeof x);
    }
  });
});
