/**
 * The inode table's memory layout (InodeStore's chunks and identity index), and what a serving
 * thread other than the owner reads of it: with several serving threads the chunks and the index
 * live in SharedArrayBuffers, so that a thread can answer a LOOKUP of a name whose inode the owner
 * already knows (the commonest LOOKUP of a stat, a `git status`, a find) without handing it over.
 *
 * The owner is the only writer of every column but one: `lk`, one Int32 word per slot through
 * which the other threads count the lookups they answered (the client's nlookup of the inode is
 * the owner's `nlookup` column plus the word's count). The word:
 *
 *   bit 30 (LK_DEAD)   the owner took the slot out of the table: no lookup may be counted
 *   bits 20-29         the slot's incarnation: bumped each time the slot holds a new inode
 *   bits 0-19          lookups counted by other threads, not yet folded into `nlookup`
 *
 * A thread reads the word, checks what it read of the slot (the inode, its parent link, the host's
 * answer for the name), and counts its lookup with one compare-and-exchange from the word it read:
 * it fails if the owner dropped the slot (LK_DEAD) or reused it (another incarnation) in between,
 * and the thread hands the LOOKUP to the owner. The owner folds a count into `nlookup` with a
 * compare-and-exchange, and drops a slot only by turning a word whose count is 0 into LK_DEAD in
 * one compare-and-exchange: a lookup counted by a thread and a drop cannot both happen.
 */

/** slots per chunk: 2^14, about 2.3 MB of columns (its pages resident as they are used) */
export const SHIFT = 14;
export const CHUNK = 1 << SHIFT;
export const MASK = CHUNK - 1;
/** name bytes kept in the slot; a longer name lives in a side map */
export const NAME_INLINE = 24;
/** file handle bytes kept in the slot (ext4 8, tmpfs 12, xfs 8-16, btrfs 20); longer in a side map */
export const HANDLE_INLINE = 24;
export const NO_LEN = 0xffff;
export const TYPE_MASK = 0o170000;
export const F_REOPENABLE = 1 << 16;
export const F_UNLINKED = 1 << 17;
/** in the identity index (an alias restored under another node id is not) */
export const F_INDEXED = 1 << 18;
export const F_LIVE = 1 << 19;
export const F_HANDLE = 1 << 20;
/** the lookup count came from a crashed predecessor's stream: it may be behind the client's */
export const F_ROUGH = 1 << 21;
export const EMPTY_SLOT = -1;

export const LK_COUNT = (1 << 20) - 1;
export const LK_INC_SHIFT = 20;
export const LK_INC_MASK = 0x3ff << LK_INC_SHIFT;
export const LK_DEAD = 1 << 30;

/** byte offsets of the columns in a chunk's buffer, 8-byte columns first (each aligned to its size) */
const OFF = (() => {
  let o = 0;
  const at = (bytesPerSlot: number): number => {
    const here = o;
    o += bytesPerSlot * CHUNK;
    return here;
  };
  const r = {
    gen: at(8), nodeid: at(8), nlookup: at(8), ino: at(8), dev: at(8), proven: at(8),
    flags: at(4), children: at(4), opens: at(4), parent: at(4), links: at(4), htype: at(4), lk: at(4),
    mount: at(2), handleLen: at(2), nameLen: at(2),
    name: at(NAME_INLINE), handle: at(HANDLE_INLINE), bytes: 0,
  };
  r.bytes = o;
  return r;
})();
export const CHUNK_BYTES = OFF.bytes;

/** The columns of CHUNK slots, carved from one buffer (a SharedArrayBuffer when threads share the table). */
export class Chunk {
  readonly gen: BigUint64Array;
  readonly nodeid: Float64Array;
  readonly nlookup: Float64Array;
  readonly ino: BigInt64Array;
  readonly dev: Float64Array;
  readonly proven: Float64Array;
  /** S_IFMT bits and the F_ flags */
  readonly flags: Uint32Array;
  readonly children: Uint32Array;
  readonly opens: Uint32Array;
  /** the parent link's slot, -1 for none */
  readonly parent: Int32Array;
  readonly links: Uint32Array;
  /** the handle's type, its mount (an index of InodeStore.mounts) and length */
  readonly htype: Int32Array;
  /** the lookup word (see the top of this file) */
  readonly lk: Int32Array;
  readonly mount: Uint16Array;
  readonly handleLen: Uint16Array;
  /** NO_LEN: no name */
  readonly nameLen: Uint16Array;
  readonly name: Uint8Array;
  readonly handle: Uint8Array;

  constructor(readonly buffer: ArrayBuffer | SharedArrayBuffer = new ArrayBuffer(CHUNK_BYTES)) {
    const b = buffer;
    this.gen = new BigUint64Array(b, OFF.gen, CHUNK);
    this.nodeid = new Float64Array(b, OFF.nodeid, CHUNK);
    this.nlookup = new Float64Array(b, OFF.nlookup, CHUNK);
    this.ino = new BigInt64Array(b, OFF.ino, CHUNK);
    this.dev = new Float64Array(b, OFF.dev, CHUNK);
    this.proven = new Float64Array(b, OFF.proven, CHUNK);
    this.flags = new Uint32Array(b, OFF.flags, CHUNK);
    this.children = new Uint32Array(b, OFF.children, CHUNK);
    this.opens = new Uint32Array(b, OFF.opens, CHUNK);
    this.parent = new Int32Array(b, OFF.parent, CHUNK);
    this.links = new Uint32Array(b, OFF.links, CHUNK);
    this.htype = new Int32Array(b, OFF.htype, CHUNK);
    this.lk = new Int32Array(b, OFF.lk, CHUNK);
    this.mount = new Uint16Array(b, OFF.mount, CHUNK);
    this.handleLen = new Uint16Array(b, OFF.handleLen, CHUNK);
    this.nameLen = new Uint16Array(b, OFF.nameLen, CHUNK);
    this.name = new Uint8Array(b, OFF.name, CHUNK * NAME_INLINE);
    this.handle = new Uint8Array(b, OFF.handle, CHUNK * HANDLE_INLINE);
  }
}

/** The identity index's home position of a handle (mount index m, type, bytes) in an index of `size` entries. */
export function handleHash(m: number, type: number, b: Uint8Array, size: number): number {
  let h = Math.imul(m ^ 0x811c9dc5, 0x01000193) ^ type;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) & (size - 1);
}

/** The slot's inline handle bytes equal `b` (mount index m, type): false for a handle kept in the side map. */
export function inlineHandleIs(c: Chunk, i: number, m: number, type: number, b: Uint8Array): boolean {
  if (!(c.flags[i]! & F_HANDLE) || c.mount[i] !== m || c.htype[i] !== type || c.handleLen[i] !== b.length || b.length > HANDLE_INLINE) return false;
  const o = i * HANDLE_INLINE;
  for (let k = 0; k < b.length; k++) if (c.handle[o + k] !== b[k]) return false;
  return true;
}

/** What the owner gives the other threads: the chunks and the identity index as they are now. */
export interface SharedInodeTables {
  chunks: SharedArrayBuffer[];
  ident: SharedArrayBuffer;
}

/**
 * The owner's side of the sharing: the tables as they are now, and whoever must be told when they
 * grow (a new chunk, a bigger index: both are new buffers; the old ones stay valid to read, merely
 * stale, so a thread that has not heard yet finds less and hands more over).
 */
export class SharedInodeLink {
  current: SharedInodeTables | null = null;
  private readonly listeners: Array<(t: SharedInodeTables) => void> = [];

  publish(t: SharedInodeTables): void {
    this.current = t;
    for (const l of this.listeners) l(t);
  }

  subscribe(l: (t: SharedInodeTables) => void): void {
    this.listeners.push(l);
  }
}

/** A found inode, as a thread read it (SharedInodes.find). */
export interface SharedInode {
  slot: number;
  /** the lookup word as read before the columns below */
  word: number;
  nodeid: number;
  generation: bigint;
  /** S_IFMT bits */
  type: number;
  ino: bigint;
  dev: number;
  /** last seen with more than one link (a non-directory) */
  multiLinked: boolean;
}

/** how far a thread probes the identity index before it gives up (the owner then looks) */
const MAX_PROBE = 64;

/**
 * A serving thread's read-only view of the owner's inode table: find a known inode by its handle
 * on the root's mount (mount index 0: the root is the table's first inode), and count a lookup of
 * it. Every read may race the owner's writes: what is read is checked against the host and then
 * validated by the compare-and-exchange of the lookup word.
 */
export class SharedInodes {
  private chunks: Chunk[] = [];
  private ident: Int32Array = new Int32Array(0);

  update(t: SharedInodeTables): void {
    // chunks never move: keep the views of those already known
    for (let k = this.chunks.length; k < t.chunks.length; k++) this.chunks.push(new Chunk(t.chunks[k]!));
    this.ident = new Int32Array(t.ident);
  }

  /**
   * The live, indexed inode with this handle whose parent link is (parentId, name), not the root
   * (node id rootId), or null. The handle must be on the root's mount and kept inline, the name
   * inline too; the caller then checks the host's attributes against `ino`, `dev` and `type`.
   */
  find(type: number, bytes: Uint8Array, parentId: number, name: Uint8Array, rootId: number): SharedInode | null {
    const t = this.ident;
    const size = t.length;
    if (size === 0 || bytes.length > HANDLE_INLINE || name.length > NAME_INLINE) return null;
    const mask = size - 1;
    let slot = -1;
    for (let i = handleHash(0, type, bytes, size), n = 0; n < MAX_PROBE; i = (i + 1) & mask, n++) {
      const s = t[i]!;
      if (s === EMPTY_SLOT) return null;
      const c = this.chunks[s >>> SHIFT];
      if (c !== undefined && inlineHandleIs(c, s & MASK, 0, type, bytes)) {
        slot = s;
        break;
      }
    }
    if (slot < 0) return null;
    const c = this.chunks[slot >>> SHIFT]!, i = slot & MASK;
    // the word first: what is read after it belongs to its incarnation, or the count fails
    const word = Atomics.load(c.lk, i);
    if (word & LK_DEAD || (word & LK_COUNT) === LK_COUNT) return null;
    const f = c.flags[i]!;
    if ((f & (F_LIVE | F_INDEXED | F_HANDLE | F_UNLINKED)) !== (F_LIVE | F_INDEXED | F_HANDLE)) return null;
    const nodeid = c.nodeid[i]!;
    if (nodeid === rootId || c.ino[i]! < 0n) return null;
    const p = c.parent[i]!;
    const pc = p >= 0 ? this.chunks[p >>> SHIFT] : undefined;
    if (pc === undefined || pc.nodeid[p & MASK] !== parentId) return null;
    if (c.nameLen[i] !== name.length) return null;
    const o = i * NAME_INLINE;
    for (let k = 0; k < name.length; k++) if (c.name[o + k] !== name[k]) return null;
    const ft = f & TYPE_MASK;
    // a directory on another device or mount than its parent is a submount: the owner marks its entry
    if (ft === 0o040000 && (pc.dev[p & MASK] !== c.dev[i] || !(pc.flags[p & MASK]! & F_HANDLE) || pc.mount[p & MASK] !== 0)) return null;
    return {
      slot, word, nodeid, generation: c.gen[i]!, type: ft, ino: c.ino[i]!, dev: c.dev[i]!, multiLinked: c.links[i]! > 1,
    };
  }

  /**
   * Count one lookup of `found`: true when its slot still holds the incarnation read by find and
   * was not dropped; false, and nothing counted, otherwise.
   */
  count(found: SharedInode): boolean {
    const c = this.chunks[found.slot >>> SHIFT]!;
    return Atomics.compareExchange(c.lk, found.slot & MASK, found.word, found.word + 1) === found.word;
  }
}
