import { LRUCache } from 'lru-cache';
import { E } from '../errors.js';
import type { Sealer } from '../handle/seal.js';
import { SEAL_LEN } from '../handle/seal.js';
import { MAX_HANDLE_SZ, NAME_MAX } from '../sys/constants.js';

/**
 * What the server remembers of an inode after it left memory, so that a client's persistent handle
 * (FUSE export: node id + generation) still resolves: LOOKUP of "." on a node id the server no
 * longer holds, or any request after a restart. The handle's own seal travels with it; nothing is
 * opened from a record whose seal does not verify.
 */
export interface InodeRecord {
  nodeid: bigint;
  generation: bigint;
  /** parent hint: the node id the inode was last reached from (0n when none) */
  parent: bigint;
  name: Buffer;
  /** S_IFMT bits */
  type: number;
  handleType: number;
  handle: Buffer;
  /**
   * MAC of the handle (Sealer.seal). Null only in this process's own export table, for an inode
   * that was never sealed: encodeState seals it when the record leaves memory.
   */
  seal: Buffer | null;
  /** lookups the client held when the record was written (restored by a successor) */
  nlookup: number;
  /**
   * In memory only: the record came from a crashed predecessor's stream, written when the inode
   * was made or moved, so its count may be lower than the client's (lookups since are not streamed).
   */
  approximate?: boolean;
}

/**
 * A bounded LRU of records of inodes that are no longer in memory, by node id and by identity (the
 * InodeStore's key of the file's handle), so that the same file reached again by name takes its
 * old node id back instead of an alias.
 */
export class ExportTable {
  private readonly lru: LRUCache<bigint, InodeRecord>;
  /** identity -> node id */
  private readonly byIdentity = new Map<string, bigint>();
  private readonly identities = new Map<bigint, string>();
  /** `identityOf` names a record's file as InodeStore does (used where the caller has no key at hand) */
  constructor(readonly max: number, private readonly identityOf: (r: InodeRecord) => string) {
    this.lru = new LRUCache<bigint, InodeRecord>({
      max: Math.max(1, max),
      dispose: (_r, nodeid) => {
        const k = this.identities.get(nodeid);
        this.identities.delete(nodeid);
        if (k !== undefined && this.byIdentity.get(k) === nodeid) this.byIdentity.delete(k);
      },
    });
  }
  get size(): number {
    return this.lru.size;
  }
  put(r: InodeRecord, identity = this.identityOf(r)): void {
    this.lru.set(r.nodeid, r);
    this.identities.set(r.nodeid, identity);
    this.byIdentity.set(identity, r.nodeid);
  }
  get(nodeid: bigint): InodeRecord | undefined {
    return this.lru.get(nodeid);
  }
  /** The record of the file with this identity, if one is kept. */
  byKey(identity: string): InodeRecord | undefined {
    const nodeid = this.byIdentity.get(identity);
    return nodeid === undefined ? undefined : this.lru.get(nodeid);
  }
  delete(nodeid: bigint): void {
    this.lru.delete(nodeid);
  }
  *values(): IterableIterator<InodeRecord> {
    yield* this.lru.values();
  }
}

/**
 * Sealed state: what a successor process needs to keep serving the same client without an
 * unmount. Layout (little endian):
 *   "HFSTATE1" | u32 count | u64 nextNodeid | u64 generation | records... |
 *   [u32 handleCount | handles...] | MAC(16) over all before
 * handle: u64 fh | u64 nodeid | u32 flags | u8 kind (0 file, 1 dir)
 * record: u64 nodeid | u64 generation | u64 parent | u32 type | i32 handleType | u32 nlookup |
 *         u16 handleLen | handle | u16 nameLen | name | seal(16)
 * One MAC covers the whole blob, so a truncated, reordered, flipped or foreign-key state is
 * refused whole; the decoder also checks every length before it reads.
 */
const MAGIC = Buffer.from('HFSTATE1', 'latin1');
const PURPOSE = 'state';
const MAX_RECORDS = 10_000_000;

/** An open file or directory the client holds (FUSE fh), handed to a successor at an upgrade. */
export interface HandleRecord {
  fh: bigint;
  nodeid: bigint;
  /** open flags to reopen with (never O_CREAT/O_EXCL/O_TRUNC) */
  flags: number;
  kind: 'file' | 'dir';
}

export interface ServerState {
  nextNodeid: bigint;
  generation: bigint;
  records: InodeRecord[];
  /** open handles (upgrade only; absent from streamed one-record states) */
  handles?: HandleRecord[];
}

export function encodeState(sealer: Sealer, st: ServerState): Buffer {
  const parts: Buffer[] = [];
  const hdr = Buffer.alloc(MAGIC.length + 4 + 16);
  MAGIC.copy(hdr, 0);
  hdr.writeUInt32LE(st.records.length, 8);
  hdr.writeBigUInt64LE(st.nextNodeid, 12);
  hdr.writeBigUInt64LE(st.generation, 20);
  parts.push(hdr);
  for (const r of st.records) {
    // what decodeState refuses is never written
    if (r.handle.length > MAX_HANDLE_SZ || r.name.length > NAME_MAX) throw new RangeError(`record ${r.nodeid}: handle or name too long for a sealed state`);
    const b = Buffer.alloc(8 * 3 + 4 * 3 + 2 + r.handle.length + 2 + r.name.length + SEAL_LEN);
    let o = 0;
    o = b.writeBigUInt64LE(r.nodeid, o);
    o = b.writeBigUInt64LE(r.generation, o);
    o = b.writeBigUInt64LE(r.parent, o);
    o = b.writeUInt32LE(r.type >>> 0, o);
    o = b.writeInt32LE(r.handleType, o);
    o = b.writeUInt32LE(Math.min(r.nlookup, 0xffffffff) >>> 0, o);
    o = b.writeUInt16LE(r.handle.length, o);
    o += r.handle.copy(b, o);
    o = b.writeUInt16LE(r.name.length, o);
    o += r.name.copy(b, o);
    (r.seal ??= sealer.seal(r.handleType, r.handle)).copy(b, o);
    parts.push(b);
  }
  if (st.handles && st.handles.length > 0) {
    const hb = Buffer.alloc(4 + st.handles.length * 21);
    let o = hb.writeUInt32LE(st.handles.length, 0);
    for (const h of st.handles) {
      o = hb.writeBigUInt64LE(h.fh, o);
      o = hb.writeBigUInt64LE(h.nodeid, o);
      o = hb.writeUInt32LE(h.flags >>> 0, o);
      o = hb.writeUInt8(h.kind === 'dir' ? 1 : 0, o);
    }
    parts.push(hb);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, sealer.mac(body, PURPOSE)]);
}

export type StateResult = { ok: true; state: ServerState } | { ok: false; errno: number; reason: string };

export function decodeState(sealer: Sealer, buf: unknown): StateResult {
  const bad = (reason: string, errno = E.EINVAL): StateResult => ({ ok: false, errno, reason });
  if (!Buffer.isBuffer(buf)) return bad('not a buffer');
  const HDR = MAGIC.length + 4 + 16;
  if (buf.length < HDR + SEAL_LEN) return bad('truncated');
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) return bad('bad magic');
  const body = buf.subarray(0, buf.length - SEAL_LEN);
  if (!sealer.verifyMac(body, buf.subarray(buf.length - SEAL_LEN), PURPOSE)) return bad('state seal does not verify', E.ESTALE);
  const count = buf.readUInt32LE(8);
  if (count > MAX_RECORDS) return bad('too many records');
  const st: ServerState = { nextNodeid: buf.readBigUInt64LE(12), generation: buf.readBigUInt64LE(20), records: [] };
  let o = HDR;
  const end = body.length;
  for (let i = 0; i < count; i++) {
    if (o + 38 > end) return bad('record truncated');
    const nodeid = body.readBigUInt64LE(o);
    const generation = body.readBigUInt64LE(o + 8);
    const parent = body.readBigUInt64LE(o + 16);
    const type = body.readUInt32LE(o + 24);
    const handleType = body.readInt32LE(o + 28);
    const nlookup = body.readUInt32LE(o + 32);
    const hl = body.readUInt16LE(o + 36);
    o += 38;
    if (hl > MAX_HANDLE_SZ || o + hl + 2 > end) return bad('handle length');
    const handle = Buffer.from(body.subarray(o, o + hl));
    o += hl;
    const nl = body.readUInt16LE(o);
    o += 2;
    if (nl > NAME_MAX || o + nl + SEAL_LEN > end) return bad('name length');
    const name = Buffer.from(body.subarray(o, o + nl));
    o += nl;
    const seal = Buffer.from(body.subarray(o, o + SEAL_LEN));
    o += SEAL_LEN;
    st.records.push({ nodeid, generation, parent, name, type, handleType, handle, seal, nlookup });
  }
  if (o !== end) {
    if (o + 4 > end) return bad('trailing bytes');
    const n = body.readUInt32LE(o);
    o += 4;
    if (n > MAX_RECORDS || o + n * 21 !== end) return bad('handle section length');
    st.handles = [];
    for (let i = 0; i < n; i++, o += 21) {
      const kind = body[o + 20];
      if (kind !== 0 && kind !== 1) return bad('handle kind');
      st.handles.push({ fh: body.readBigUInt64LE(o), nodeid: body.readBigUInt64LE(o + 8), flags: body.readUInt32LE(o + 16), kind: kind === 1 ? 'dir' : 'file' });
    }
  }
  return { ok: true, state: st };
}
