import type { Logger } from 'pino';
import { handleKey, type FileHandle } from '../handle/file-handle.js';
import {
  CHUNK, CHUNK_BYTES, Chunk, EMPTY_SLOT, F_HANDLE, F_INDEXED, F_LIVE, F_REOPENABLE, F_ROUGH, F_UNLINKED, HANDLE_INLINE, LK_COUNT, LK_DEAD, LK_INC_MASK,
  LK_INC_SHIFT, MASK, NAME_INLINE, NO_LEN, SHIFT, TYPE_MASK, handleHash, inlineHandleIs, type SharedInodeLink,
} from './shared-inodes.js';

/**
 * The inode table: what the server knows of every host inode the client may name, kept in typed
 * arrays indexed by slot (a struct of arrays), not one JS object per inode: a known inode costs
 * about 160 bytes (its columns, inline name and handle bytes, its share of two open-addressing
 * indexes) and no garbage-collector work (`scripts/bench-memory`, `scripts/stress-fds` measure it).
 *
 * `Inode` is a short-lived view of one slot (made by `get`, `byHandle`, `create`, ...): two views
 * of the same inode are different objects, so inodes are compared with `is`, never `===`. A view
 * is used synchronously within one request (or kept by an open file, which keeps its slot alive);
 * a slot is reused only after its inode left the table.
 *
 * With several serving threads the chunks and the identity index are SharedArrayBuffers the
 * other threads read, and each slot's lookup word is where they count the lookups they answer
 * (src/fs/shared-inodes.ts): the owner folds those into `nlookup` and drops a slot only through
 * that word.
 */

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** A view of one inode of the table. Identity is the sealed file handle (or dev:ino on a filesystem without handles); the fd is only a cache entry (FdCache key `fdKey`). */
export class Inode {
  private key: string | null = null;
  /** the slot's chunk and its index there */
  private readonly c: Chunk;
  private readonly i: number;

  constructor(
    private readonly t: InodeStore,
    readonly slot: number,
    readonly nodeid: bigint,
  ) {
    this.c = t.chunkOf(slot);
    this.i = slot & MASK;
  }

  /** The same inode (two views of one slot). */
  is(other: Inode | null | undefined): boolean {
    return other != null && other.slot === this.slot && other.t === this.t;
  }

  get generation(): bigint {
    return this.c.gen[this.i]!;
  }

  /** S_IFMT bits of the mode */
  get type(): number {
    return this.c.flags[this.i]! & TYPE_MASK;
  }

  /** lookups the client holds (FUSE nlookup), those other serving threads counted included; saturates at 0 */
  get nlookup(): number {
    return this.c.nlookup[this.i]! + (Atomics.load(this.c.lk, this.i) & LK_COUNT);
  }

  /** Set the count of an inode no lookup was counted on yet (the root, a restored record's count). */
  set nlookup(v: number) {
    this.t.fold(this.slot);
    this.c.nlookup[this.i] = v;
  }

  /** Count one lookup (the owner's; other threads count theirs in the lookup word). */
  addLookup(): void {
    this.c.nlookup[this.i] = this.c.nlookup[this.i]! + 1;
  }

  /** inodes whose parent link points here: a parent stays known while a child may need the re-walk */
  get children(): number {
    return this.c.children[this.i]!;
  }

  /** open files and directories (fh) on this inode */
  get opens(): number {
    return this.c.opens[this.i]!;
  }

  set opens(v: number) {
    this.c.opens[this.i] = v;
  }

  /** the host unlinked it while the client still references it: its fd cannot be reopened */
  get unlinked(): boolean {
    return (this.c.flags[this.i]! & F_UNLINKED) !== 0;
  }

  set unlinked(v: boolean) {
    this.t.setFlag(this.slot, F_UNLINKED, v);
  }

  /** the lookup count was restored after a crash and may be lower than the client's (F_ROUGH) */
  get countApproximate(): boolean {
    return (this.c.flags[this.i]! & F_ROUGH) !== 0;
  }

  set countApproximate(v: boolean) {
    this.t.setFlag(this.slot, F_ROUGH, v);
  }

  /** the fd can never be reopened (root, no handle, other mount, tmpfile): pinned for life */
  get reopenable(): boolean {
    return (this.c.flags[this.i]! & F_REOPENABLE) !== 0;
  }

  set reopenable(v: boolean) {
    this.t.setFlag(this.slot, F_REOPENABLE, v);
  }

  /** parent link (the last name the client reached it by): used by the by-path reopen */
  get parent(): Inode | null {
    const p = this.c.parent[this.i]!;
    return p < 0 ? null : this.t.view(p);
  }

  /** the parent link's name (a copy) */
  get name(): Buffer | null {
    return this.t.nameOf(this.slot);
  }

  /** The parent link is (parent, name). */
  linkedAs(parent: Inode, name: Buffer): boolean {
    return this.c.parent[this.i] === parent.slot && this.t.nameIs(this.slot, name);
  }

  /**
   * Other names (hard links) the server has seen for a non-directory, by parent node id: when the
   * parent link's name goes, one of them takes its place. Null until a second name is seen.
   */
  get altLinks(): AltLink[] | null {
    return this.t.altLinks.get(this.slot) ?? null;
  }

  set altLinks(v: AltLink[] | null) {
    if (v) this.t.altLinks.set(this.slot, v);
    else this.t.altLinks.delete(this.slot);
  }

  /** a non-directory's link count when last seen (InodeStore.setLinks); 0 = not seen */
  get links(): number {
    return this.c.links[this.i]!;
  }

  /** the last file opened on it (an fh still open): xattr reads go through its real fd, not /proc */
  get openFile(): { readonly fdKey: string } | null {
    return this.t.openFiles.get(this.slot) ?? null;
  }

  set openFile(v: { readonly fdKey: string } | null) {
    if (v) this.t.openFiles.set(this.slot, v);
    else this.t.openFiles.delete(this.slot);
  }

  /** inode number as the host reported it at the last lookup through an fd (-1: not yet; LOOKUP's fast path checks it) */
  get ino(): bigint {
    return this.c.ino[this.i]!;
  }

  set ino(v: bigint) {
    this.t.setDevIno(this.slot, this.dev, v);
  }

  /** device (devOf) as the host reported it at the last lookup through an fd */
  get dev(): number {
    return this.c.dev[this.i]!;
  }

  set dev(v: number) {
    this.t.setDevIno(this.slot, v, this.ino);
  }

  /** MoveWatch epoch at which it was last proven to be beneath the root (-2: never) */
  get proven(): number {
    return this.c.proven[this.i]!;
  }

  set proven(v: number) {
    this.c.proven[this.i] = v;
  }

  /**
   * MAC of the handle: given by a record (verified when it was read), or made on first need
   * (sealOf in records.ts) when the record leaves memory. Null until then: a handle the server got
   * from name_to_handle_at and holds in memory needs no MAC to be trusted.
   */
  get seal(): Buffer | null {
    return this.t.seals.get(this.slot) ?? null;
  }

  set seal(v: Buffer | null) {
    if (v) this.t.seals.set(this.slot, v);
    else this.t.seals.delete(this.slot);
  }

  /** the kernel file handle (a copy), null on a filesystem without handles */
  get handle(): FileHandle | null {
    return this.t.handleOf(this.slot);
  }

  /** the mount its handle came from (null without a handle), without copying the handle */
  get mountId(): bigint | null {
    return this.t.mountOf(this.slot);
  }

  /** the key its record is found by in the export table (identityOf) */
  get identity(): string {
    return (this.key ??= this.t.identityAt(this.slot));
  }

  get fdKey(): string {
    return `i${this.nodeid}`;
  }
}

/** Another name of a hard-linked inode: the parent's node id (it may have left memory) and the name. */
export interface AltLink {
  parent: bigint;
  name: Buffer;
}

/** How many other names an inode remembers (the oldest is forgotten first). */
const MAX_ALT_LINKS = 8;

/** Remember (parent, name) as another name of `inode` (not its parent link). */
export function rememberAltLink(inode: Inode, parent: bigint, name: Buffer): void {
  dropAltLink(inode, parent, name);
  const l = inode.altLinks ?? [];
  if (l.length >= MAX_ALT_LINKS) l.shift();
  l.push({ parent, name: Buffer.from(name) });
  inode.altLinks = l;
}

/** (parent, name) is no longer a name of `inode`. */
export function dropAltLink(inode: Inode, parent: bigint, name: Buffer): void {
  const l = inode.altLinks;
  if (!l) return;
  const i = l.findIndex((a) => a.parent === parent && a.name.equals(name));
  if (i >= 0) l.splice(i, 1);
  if (l.length === 0) inode.altLinks = null;
}

/**
 * The key a record is found by in the export table: its file handle (handleKey, within the
 * share's mount: records are only of inodes on it), or (dev, ino) where the filesystem has no
 * handles ('d...', never a handle's key, which starts with 'h').
 */
export function identityOf(h: FileHandle | null, st: { devMajor: number; devMinor: number; ino: bigint }): string {
  return h ? handleKey(h.type, h.bytes) : `d${st.devMajor * 0x100000 + st.devMinor}:${st.ino}`;
}

/** What a new inode is made of (InodeStore.create). */
export interface NewInode {
  nodeid: bigint;
  generation: bigint;
  /** S_IFMT bits */
  type: number;
  handle: FileHandle | null;
  seal: Buffer | null;
  reopenable: boolean;
  /** host device and inode number: the identity of an inode without a handle (and the fast path's check) */
  dev: number;
  ino: bigint;
  /** false: found by node id only (another node already owns this identity: a restored alias) */
  indexed?: boolean;
}

/**
 * nodeid <-> inode and identity -> inode (virtiofsd inode_store.rs), in typed arrays. Node ids
 * come from a counter and are never reused. An inode is dropped when the client forgot it, no
 * child links to it and no file is open on it; dropping it releases its fd through `onDrop` and
 * may drop its parent.
 */
export class InodeStore {
  /** the columns, a chunk of CHUNK slots each: growth adds a chunk, nothing is copied */
  private readonly chunks: Chunk[] = [];
  // rare per-inode data, by slot
  readonly altLinks = new Map<number, AltLink[]>();
  readonly openFiles = new Map<number, { readonly fdKey: string }>();
  readonly seals = new Map<number, Buffer>();
  private readonly longNames = new Map<number, Buffer>();
  private readonly longHandles = new Map<number, Buffer>();
  /** mount ids of handles, by index (a share has one, or a few with submounts) */
  private readonly mounts: bigint[] = [];
  /** node id -> slot and identity -> slot: open addressing, linear probing, slots (-1 empty), at most half full */
  private byNode = new Int32Array(2 * CHUNK).fill(EMPTY_SLOT);
  private byIdent: Int32Array;
  private used = 0;
  /** slots freed, reused oldest first */
  private free: number[] = [];
  private freeHead = 0;
  private count = 0;
  private nextId: bigint;

  constructor(
    private readonly rootId: bigint,
    private readonly log: Logger,
    /** an inode left memory: release its fd, keep its record */
    private readonly onDrop: ((inode: Inode) => void) | null = null,
    /**
     * The other serving threads read the chunks and the identity index (src/fs/shared-inodes.ts):
     * they live in SharedArrayBuffers, and the link hears of each new one.
     */
    private readonly sharing: SharedInodeLink | null = null,
  ) {
    this.nextId = rootId + 1n;
    this.byIdent = this.newIndex(2 * CHUNK);
  }

  private newIndex(size: number): Int32Array {
    return new Int32Array(this.sharing ? new SharedArrayBuffer(size * 4) : new ArrayBuffer(size * 4)).fill(EMPTY_SLOT);
  }

  /** Tell the other threads of the chunks and index as they are now. */
  private share(): void {
    this.sharing?.publish({ chunks: this.chunks.map((c) => c.buffer as SharedArrayBuffer), ident: this.byIdent.buffer as SharedArrayBuffer });
  }

  /** Fold the lookups other threads counted on `slot` into its nlookup column. */
  fold(slot: number): void {
    const c = this.chunkOf(slot), i = slot & MASK;
    for (;;) {
      const w = Atomics.load(c.lk, i);
      const n = w & LK_COUNT;
      if (n === 0) return;
      if (Atomics.compareExchange(c.lk, i, w, w - n) === w) {
        c.nlookup[i] = c.nlookup[i]! + n;
        return;
      }
    }
  }

  get size(): number {
    return this.count;
  }

  /** Bytes the table's arrays hold (capacity, not use). */
  get bytes(): number {
    return this.chunks.length * CHUNK_BYTES + this.byNode.byteLength + this.byIdent.byteLength;
  }

  /** The chunk of a slot (the Inode views keep theirs). */
  chunkOf(slot: number): Chunk {
    return this.chunks[slot >>> SHIFT]!;
  }

  /** Non-directories in memory last seen with more than one link: while none, an unlink needs no bookkeeping of names. */
  multiLinked = 0;
  /** told `multiLinked` whenever it changes */
  onMultiLinked: ((n: number) => void) | null = null;

  /** Record a non-directory's link count as just seen. */
  setLinks(inode: Inode, n: number): void {
    const old = this.chunkOf(inode.slot).links[inode.slot & MASK]!;
    if (old > 1 !== n > 1) {
      this.multiLinked += n > 1 ? 1 : -1;
      this.onMultiLinked?.(this.multiLinked);
    }
    this.chunkOf(inode.slot).links[inode.slot & MASK] = Math.min(n, 0xffffffff);
  }

  get(nodeid: bigint): Inode | undefined {
    if (nodeid > MAX_SAFE || nodeid < 0n) return undefined;
    const slot = this.findNode(Number(nodeid));
    return slot < 0 ? undefined : new Inode(this, slot, nodeid);
  }

  /** The inode with this file handle (same mount, type and bytes), if it is indexed. */
  byHandle(h: FileHandle): Inode | undefined {
    const m = this.mounts.indexOf(h.mountId);
    if (m < 0) return undefined;
    const slot = this.findHandle(m, h.type, h.bytes);
    return slot < 0 ? undefined : this.view(slot);
  }

  /** The inode without a handle that has this (dev, ino), if it is indexed. */
  byDevIno(dev: number, ino: bigint): Inode | undefined {
    const slot = this.findDevIno(dev, ino);
    return slot < 0 ? undefined : this.view(slot);
  }

  allocId(): bigint {
    return this.nextId++;
  }

  /** The next node id to hand out (a successor continues after its predecessor's ids). */
  get next(): bigint {
    return this.nextId;
  }

  set next(v: bigint) {
    if (v > this.nextId) this.nextId = v;
  }

  /** Add a new inode (lookup count 0, no parent link). */
  create(n: NewInode): Inode {
    if (n.nodeid > MAX_SAFE) throw new RangeError('node id beyond 2^53');
    if (this.findNode(Number(n.nodeid)) >= 0) throw new Error(`node id ${n.nodeid} is already in the table`);
    const slot = this.takeSlot();
    const c = this.chunkOf(slot), i = slot & MASK;
    // the slot's next incarnation is published by the lookup word once its columns are written (below)
    const word = ((((Atomics.load(c.lk, i) & LK_INC_MASK) >>> LK_INC_SHIFT) + 1) & (LK_INC_MASK >>> LK_INC_SHIFT)) << LK_INC_SHIFT;
    c.gen[i] = n.generation;
    c.nodeid[i] = Number(n.nodeid);
    let f = (n.type & TYPE_MASK) | F_LIVE;
    if (n.reopenable) f |= F_REOPENABLE;
    if (n.handle) f |= F_HANDLE;
    c.flags[i] = f;
    c.nlookup[i] = 0;
    c.children[i] = 0;
    c.opens[i] = 0;
    c.parent[i] = -1;
    c.links[i] = 0;
    c.ino[i] = n.ino;
    c.dev[i] = n.dev;
    c.proven[i] = -2;
    c.nameLen[i] = NO_LEN;
    if (n.handle) {
      let m = this.mounts.indexOf(n.handle.mountId);
      if (m < 0) {
        if (this.mounts.length >= 0xffff) throw new RangeError('too many mounts below the shared directory');
        m = this.mounts.push(n.handle.mountId) - 1;
      }
      c.mount[i] = m;
      c.htype[i] = n.handle.type;
      const b = n.handle.bytes;
      c.handleLen[i] = b.length;
      if (b.length <= HANDLE_INLINE) c.handle.set(b, (slot & MASK) * HANDLE_INLINE);
      else this.longHandles.set(slot, Buffer.from(b));
    } else {
      c.handleLen[i] = 0;
    }
    if (n.seal) this.seals.set(slot, n.seal);
    this.count++;
    Atomics.store(c.lk, i, word);
    this.insertNode(slot);
    if (n.indexed !== false) this.index(slot);
    return new Inode(this, slot, n.nodeid);
  }

  /** Point `inode`'s parent link at (parent, name), keeping the parents' child counts right. */
  setParent(inode: Inode, parent: Inode | null, name: Buffer | null): void {
    const slot = inode.slot;
    this.setName(slot, name);
    const old = this.chunkOf(slot).parent[slot & MASK]!;
    const p = parent ? parent.slot : -1;
    if (old === p) return;
    if (p >= 0) this.chunkOf(p).children[p & MASK]!++;
    this.chunkOf(slot).parent[slot & MASK] = p;
    if (old >= 0) {
      this.chunkOf(old).children[old & MASK]!--;
      this.maybeDropSlot(old);
    }
  }

  /** Drop `n` lookups; a count going below zero is a client bug: saturate and log, never abort. */
  /** Drop n of the client's lookups; false when it had fewer (the count saturates at 0; the caller logs it). */
  forget(inode: Inode, n: number): boolean {
    this.fold(inode.slot);
    const have = this.chunkOf(inode.slot).nlookup[inode.slot & MASK]!;
    const ok = n <= have;
    this.chunkOf(inode.slot).nlookup[inode.slot & MASK] = ok ? have - n : 0;
    this.maybeDropSlot(inode.slot);
    return ok;
  }

  /** The identity was reused or removed: stop finding this inode by it (its nodeid stays valid). */
  unindex(inode: Inode): void {
    this.unindexSlot(inode.slot);
  }

  maybeDrop(inode: Inode): void {
    this.maybeDropSlot(inode.slot);
  }

  *all(): IterableIterator<Inode> {
    for (let s = 0; s < this.used; s++) if (this.chunkOf(s).flags[s & MASK]! & F_LIVE) yield this.view(s);
  }

  // ---- used by the Inode views

  view(slot: number): Inode {
    return new Inode(this, slot, BigInt(this.chunkOf(slot).nodeid[slot & MASK]!));
  }

  /** (dev, ino) is the identity of an inode without a handle: it moves in the index with them. */
  setDevIno(slot: number, dev: number, ino: bigint): void {
    if (this.chunkOf(slot).dev[slot & MASK] === dev && this.chunkOf(slot).ino[slot & MASK] === ino) return;
    const reindex = (this.chunkOf(slot).flags[slot & MASK]! & (F_HANDLE | F_INDEXED)) === F_INDEXED;
    if (reindex) this.unindexSlot(slot);
    this.chunkOf(slot).dev[slot & MASK] = dev;
    this.chunkOf(slot).ino[slot & MASK] = ino;
    if (reindex) this.index(slot);
  }

  setFlag(slot: number, bit: number, on: boolean): void {
    this.chunkOf(slot).flags[slot & MASK] = on ? this.chunkOf(slot).flags[slot & MASK]! | bit : this.chunkOf(slot).flags[slot & MASK]! & ~bit;
  }

  nameOf(slot: number): Buffer | null {
    const len = this.chunkOf(slot).nameLen[slot & MASK]!;
    if (len === NO_LEN) return null;
    if (len > NAME_INLINE) return Buffer.from(this.longNames.get(slot)!);
    const o = (slot & MASK) * NAME_INLINE;
    return Buffer.from(this.chunkOf(slot).name.subarray(o, o + len));
  }

  nameIs(slot: number, name: Buffer): boolean {
    const len = this.chunkOf(slot).nameLen[slot & MASK]!;
    if (len !== name.length) return false;
    if (len > NAME_INLINE) return this.longNames.get(slot)!.equals(name);
    const a = this.chunkOf(slot).name, o = (slot & MASK) * NAME_INLINE;
    for (let i = 0; i < len; i++) if (a[o + i] !== name[i]) return false;
    return true;
  }

  handleOf(slot: number): FileHandle | null {
    if (!(this.chunkOf(slot).flags[slot & MASK]! & F_HANDLE)) return null;
    return { type: this.chunkOf(slot).htype[slot & MASK]!, bytes: Buffer.from(this.handleBytesAt(slot)), mountId: this.mounts[this.chunkOf(slot).mount[slot & MASK]!]! };
  }

  mountOf(slot: number): bigint | null {
    return this.chunkOf(slot).flags[slot & MASK]! & F_HANDLE ? this.mounts[this.chunkOf(slot).mount[slot & MASK]!]! : null;
  }

  identityAt(slot: number): string {
    const c = this.chunkOf(slot), i = slot & MASK;
    return c.flags[i]! & F_HANDLE ? handleKey(c.htype[i]!, this.handleBytesAt(slot)) : `d${c.dev[i]}:${c.ino[i]}`;
  }

  // ---- slots

  private handleBytesAt(slot: number): Uint8Array {
    const len = this.chunkOf(slot).handleLen[slot & MASK]!;
    if (len > HANDLE_INLINE) return this.longHandles.get(slot)!;
    const o = (slot & MASK) * HANDLE_INLINE;
    return this.chunkOf(slot).handle.subarray(o, o + len);
  }

  private setName(slot: number, name: Buffer | null): void {
    this.longNames.delete(slot);
    if (!name) {
      this.chunkOf(slot).nameLen[slot & MASK] = NO_LEN;
      return;
    }
    // NAME_MAX is 255: a name always fits the length column
    this.chunkOf(slot).nameLen[slot & MASK] = name.length;
    if (name.length > NAME_INLINE) this.longNames.set(slot, Buffer.from(name));
    else this.chunkOf(slot).name.set(name, (slot & MASK) * NAME_INLINE);
  }

  private takeSlot(): number {
    this.growIndexes();
    if (this.freeHead < this.free.length) {
      const s = this.free[this.freeHead++]!;
      if (this.freeHead > 4096 && this.freeHead * 2 > this.free.length) {
        this.free = this.free.slice(this.freeHead);
        this.freeHead = 0;
      }
      return s;
    }
    if (this.used === this.chunks.length * CHUNK) {
      this.chunks.push(new Chunk(this.sharing ? new SharedArrayBuffer(CHUNK_BYTES) : new ArrayBuffer(CHUNK_BYTES)));
      this.share();
    }
    return this.used++;
  }

  private maybeDropSlot(start: number): void {
    let slot = start;
    // iterative: dropping a child may drop its parent, and so on up the chain
    while (slot >= 0 && this.chunkOf(slot).flags[slot & MASK]! & F_LIVE && this.chunkOf(slot).nlookup[slot & MASK] === 0 && this.chunkOf(slot).children[slot & MASK] === 0
      && this.chunkOf(slot).opens[slot & MASK] === 0 && this.chunkOf(slot).nodeid[slot & MASK] !== Number(this.rootId)) {
      // out of the table only while no other thread counted a lookup: then none can any more
      const c = this.chunkOf(slot), w = Atomics.load(c.lk, slot & MASK);
      if (w & LK_COUNT || Atomics.compareExchange(c.lk, slot & MASK, w, w | LK_DEAD) !== w) {
        this.fold(slot);
        break;
      }
      const inode = this.view(slot);
      this.onDrop?.(inode);
      this.removeNode(slot);
      this.unindexSlot(slot);
      if (this.chunkOf(slot).links[slot & MASK]! > 1) {
        this.multiLinked--;
        this.onMultiLinked?.(this.multiLinked);
      }
      const parent = this.chunkOf(slot).parent[slot & MASK]!;
      this.chunkOf(slot).parent[slot & MASK] = -1;
      this.chunkOf(slot).flags[slot & MASK] = 0;
      this.altLinks.delete(slot);
      this.openFiles.delete(slot);
      this.seals.delete(slot);
      this.longNames.delete(slot);
      this.longHandles.delete(slot);
      this.count--;
      this.free.push(slot);
      if (parent >= 0) this.chunkOf(parent).children[parent & MASK]!--;
      slot = parent;
    }
  }

  /** Room in the indexes for one more inode: they double when half full. */
  private growIndexes(): void {
    if ((this.count + 1) * 2 <= this.byNode.length) return;
    const size = this.byNode.length * 2;
    this.byNode = new Int32Array(size).fill(EMPTY_SLOT);
    this.byIdent = this.newIndex(size);
    for (let s = 0; s < this.used; s++) {
      const c = this.chunkOf(s), i = s & MASK;
      if (!(c.flags[i]! & F_LIVE)) continue;
      this.insertNode(s);
      if (c.flags[i]! & F_INDEXED) {
        c.flags[i] = c.flags[i]! & ~F_INDEXED;
        this.index(s);
      }
    }
    this.share();
  }

  // ---- node id index

  private nodeHash(n: number): number {
    const lo = n >>> 0;
    const hi = (n / 4294967296) >>> 0;
    return (Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1) >>> 0) & (this.byNode.length - 1);
  }

  private findNode(n: number): number {
    const t = this.byNode, mask = t.length - 1;
    for (let i = this.nodeHash(n); ; i = (i + 1) & mask) {
      const s = t[i]!;
      if (s === EMPTY_SLOT) return -1;
      if (this.chunkOf(s).nodeid[s & MASK] === n) return s;
    }
  }

  private insertNode(slot: number): void {
    const t = this.byNode, mask = t.length - 1;
    let i = this.nodeHash(this.chunkOf(slot).nodeid[slot & MASK]!);
    while (t[i] !== EMPTY_SLOT) i = (i + 1) & mask;
    t[i] = slot;
  }

  private removeNode(slot: number): void {
    const t = this.byNode;
    let i = this.nodeHash(this.chunkOf(slot).nodeid[slot & MASK]!);
    const mask = t.length - 1;
    while (t[i] !== slot) {
      if (t[i] === EMPTY_SLOT) return;
      i = (i + 1) & mask;
    }
    this.shiftBack(t, i, (s) => this.nodeHash(this.chunkOf(s).nodeid[s & MASK]!));
  }

  /** Linear-probing deletion at i: move later entries of the run back so that no probe breaks. */
  private shiftBack(t: Int32Array, i: number, home: (slot: number) => number): void {
    const mask = t.length - 1;
    let hole = i;
    for (let j = (i + 1) & mask; t[j] !== EMPTY_SLOT; j = (j + 1) & mask) {
      const h = home(t[j]!);
      // the entry at j may move to the hole when its home is not in (hole, j] (cyclically)
      if (hole <= j ? h <= hole || h > j : h <= hole && h > j) {
        t[hole] = t[j]!;
        hole = j;
      }
    }
    t[hole] = EMPTY_SLOT;
  }

  // ---- identity index: handle (mount, type, bytes), or (dev, ino) without a handle

  private identHash(slot: number): number {
    if (this.chunkOf(slot).flags[slot & MASK]! & F_HANDLE) return this.handleHash(this.chunkOf(slot).mount[slot & MASK]!, this.chunkOf(slot).htype[slot & MASK]!, this.handleBytesAt(slot));
    return this.devInoHash(this.chunkOf(slot).dev[slot & MASK]!, this.chunkOf(slot).ino[slot & MASK]!);
  }

  private handleHash(m: number, type: number, b: Uint8Array): number {
    return handleHash(m, type, b, this.byIdent.length);
  }

  private devInoHash(dev: number, ino: bigint): number {
    const lo = Number(BigInt.asUintN(32, ino));
    const hi = Number(BigInt.asUintN(32, ino >> 32n));
    const h = Math.imul(lo ^ Math.imul(hi ^ (dev >>> 0), 0x27d4eb2d), 0x9e3779b1) ^ 0x5bd1e995;
    return ((h ^ (h >>> 16)) >>> 0) & (this.byIdent.length - 1);
  }

  private findHandle(m: number, type: number, b: Uint8Array): number {
    const t = this.byIdent, mask = t.length - 1;
    for (let i = this.handleHash(m, type, b); ; i = (i + 1) & mask) {
      const s = t[i]!;
      if (s === EMPTY_SLOT) return -1;
      // an inline handle is compared as the other serving threads compare it; a long one through the side map
      if (b.length <= HANDLE_INLINE ? inlineHandleIs(this.chunkOf(s), s & MASK, m, type, b)
        : this.chunkOf(s).flags[s & MASK]! & F_HANDLE && this.chunkOf(s).mount[s & MASK] === m && this.chunkOf(s).htype[s & MASK] === type
          && this.chunkOf(s).handleLen[s & MASK] === b.length && bytesEqual(this.handleBytesAt(s), b)) return s;
    }
  }

  private findDevIno(dev: number, ino: bigint): number {
    const t = this.byIdent, mask = t.length - 1;
    for (let i = this.devInoHash(dev, ino); ; i = (i + 1) & mask) {
      const s = t[i]!;
      if (s === EMPTY_SLOT) return -1;
      if (!(this.chunkOf(s).flags[s & MASK]! & F_HANDLE) && this.chunkOf(s).dev[s & MASK] === dev && this.chunkOf(s).ino[s & MASK] === ino) return s;
    }
  }

  /** Make `slot` the one found by its identity (an older holder of it is unindexed). */
  private index(slot: number): void {
    const other = this.chunkOf(slot).flags[slot & MASK]! & F_HANDLE
      ? this.findHandle(this.chunkOf(slot).mount[slot & MASK]!, this.chunkOf(slot).htype[slot & MASK]!, this.handleBytesAt(slot))
      : this.findDevIno(this.chunkOf(slot).dev[slot & MASK]!, this.chunkOf(slot).ino[slot & MASK]!);
    if (other === slot) return;
    if (other >= 0) this.unindexSlot(other);
    const t = this.byIdent, mask = t.length - 1;
    let i = this.identHash(slot);
    while (t[i] !== EMPTY_SLOT) i = (i + 1) & mask;
    t[i] = slot;
    this.chunkOf(slot).flags[slot & MASK] = this.chunkOf(slot).flags[slot & MASK]! | F_INDEXED;
  }

  private unindexSlot(slot: number): void {
    if (!(this.chunkOf(slot).flags[slot & MASK]! & F_INDEXED)) return;
    const t = this.byIdent, mask = t.length - 1;
    let i = this.identHash(slot);
    while (t[i] !== slot) {
      if (t[i] === EMPTY_SLOT) return;
      i = (i + 1) & mask;
    }
    this.shiftBack(t, i, (s) => this.identHash(s));
    this.chunkOf(slot).flags[slot & MASK] = this.chunkOf(slot).flags[slot & MASK]! & ~F_INDEXED;
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
