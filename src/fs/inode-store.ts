import type { Logger } from 'pino';
import { handleKey, type FileHandle } from '../handle/file-handle.js';

/**
 * The inode table: what the server knows of every host inode the client may name, kept in typed
 * arrays indexed by slot (a struct of arrays), not one JS object per inode. A million known inodes
 * then cost about 150 bytes each (columns, inline name and handle bytes, two open-addressing
 * indexes) and no garbage-collector work; an object per inode with its Buffers, strings and Map
 * entries cost about 1.7 KB (measured: .mp/probe of the session notes, `scripts/stress-fds`).
 *
 * `Inode` is a short-lived view of one slot (made by `get`, `byHandle`, `create`, ...): two views
 * of the same inode are different objects, so inodes are compared with `is`, never `===`. A view
 * is used synchronously within one request (or kept by an open file, which keeps its slot alive);
 * a slot is reused only after its inode left the table.
 */

/** name bytes kept in the slot; a longer name lives in a side map */
const NAME_INLINE = 24;
/** file handle bytes kept in the slot (ext4 8, tmpfs 12, xfs 8-16, btrfs 20); longer in a side map */
const HANDLE_INLINE = 24;
const NO_LEN = 0xffff;
const TYPE_MASK = 0o170000;
const F_REOPENABLE = 1 << 16;
const F_UNLINKED = 1 << 17;
/** in the identity index (an alias restored under another node id is not) */
const F_INDEXED = 1 << 18;
const F_LIVE = 1 << 19;
const F_HANDLE = 1 << 20;
const EMPTY_SLOT = -1;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A view of one inode of the table. Identity is the sealed file handle (or dev:ino on a filesystem without handles); the fd is only a cache entry (FdCache key `fdKey`). */
export class Inode {
  private key: string | null = null;

  constructor(
    private readonly t: InodeStore,
    readonly slot: number,
    readonly nodeid: bigint,
  ) {}

  /** The same inode (two views of one slot). */
  is(other: Inode | null | undefined): boolean {
    return other != null && other.slot === this.slot && other.t === this.t;
  }

  get generation(): bigint {
    return this.t.gen[this.slot]!;
  }

  /** S_IFMT bits of the mode */
  get type(): number {
    return this.t.flags[this.slot]! & TYPE_MASK;
  }

  /** lookups the client holds (FUSE nlookup); saturates at 0 */
  get nlookup(): number {
    return this.t.nlookupCol[this.slot]!;
  }

  set nlookup(v: number) {
    this.t.nlookupCol[this.slot] = v;
  }

  /** inodes whose parent link points here: a parent stays known while a child may need the re-walk */
  get children(): number {
    return this.t.childrenCol[this.slot]!;
  }

  /** open files and directories (fh) on this inode */
  get opens(): number {
    return this.t.opensCol[this.slot]!;
  }

  set opens(v: number) {
    this.t.opensCol[this.slot] = v;
  }

  /** the host unlinked it while the client still references it: its fd cannot be reopened */
  get unlinked(): boolean {
    return (this.t.flags[this.slot]! & F_UNLINKED) !== 0;
  }

  set unlinked(v: boolean) {
    this.t.setFlag(this.slot, F_UNLINKED, v);
  }

  /** the fd can never be reopened (root, no handle, other mount, tmpfile): pinned for life */
  get reopenable(): boolean {
    return (this.t.flags[this.slot]! & F_REOPENABLE) !== 0;
  }

  set reopenable(v: boolean) {
    this.t.setFlag(this.slot, F_REOPENABLE, v);
  }

  /** parent link (the last name the client reached it by): used by the by-path reopen */
  get parent(): Inode | null {
    const p = this.t.parentCol[this.slot]!;
    return p < 0 ? null : this.t.view(p);
  }

  /** the parent link's name (a copy) */
  get name(): Buffer | null {
    return this.t.nameOf(this.slot);
  }

  /** The parent link is (parent, name). */
  linkedAs(parent: Inode, name: Buffer): boolean {
    return this.t.parentCol[this.slot] === parent.slot && this.t.nameIs(this.slot, name);
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
    return this.t.linksCol[this.slot]!;
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
    return this.t.inoCol[this.slot]!;
  }

  set ino(v: bigint) {
    this.t.setDevIno(this.slot, this.dev, v);
  }

  /** device (devOf) as the host reported it at the last lookup through an fd */
  get dev(): number {
    return this.t.devCol[this.slot]!;
  }

  set dev(v: number) {
    this.t.setDevIno(this.slot, v, this.ino);
  }

  /** MoveWatch epoch at which it was last proven to be beneath the root (-2: never) */
  get proven(): number {
    return this.t.provenCol[this.slot]!;
  }

  set proven(v: number) {
    this.t.provenCol[this.slot] = v;
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
 * The key a record is found by in the export table: its file handle, or (dev, ino) where the
 * filesystem has no handles.
 */
export function identityOf(h: FileHandle | null, st: { devMajor: number; devMinor: number; ino: bigint }): string {
  return h ? handleKey(h) : `d${st.devMajor * 0x100000 + st.devMinor}:${st.ino}`;
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
  // columns, by slot (public to the Inode views of this module; nothing else writes them)
  gen: BigUint64Array;
  nodeidCol: Float64Array;
  flags: Uint32Array;
  nlookupCol: Float64Array;
  childrenCol: Uint32Array;
  opensCol: Uint32Array;
  parentCol: Int32Array;
  linksCol: Uint32Array;
  inoCol: BigInt64Array;
  devCol: Float64Array;
  provenCol: Float64Array;
  handleType: Int32Array;
  mountIdx: Uint16Array;
  nameLen: Uint16Array;
  handleLen: Uint16Array;
  nameBytes: Uint8Array;
  handleBytes: Uint8Array;
  // rare per-inode data, by slot
  readonly altLinks = new Map<number, AltLink[]>();
  readonly openFiles = new Map<number, { readonly fdKey: string }>();
  readonly seals = new Map<number, Buffer>();
  private readonly longNames = new Map<number, Buffer>();
  private readonly longHandles = new Map<number, Buffer>();
  /** mount ids of handles, by index (a share has one, or a few with submounts) */
  private readonly mounts: bigint[] = [];
  /** node id -> slot and identity -> slot: open addressing, linear probing, slots (-1 empty) */
  private byNode: Int32Array;
  private byIdent: Int32Array;
  private cap: number;
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
    initialCapacity = 1024,
  ) {
    this.nextId = rootId + 1n;
    this.cap = 0;
    this.gen = new BigUint64Array(0);
    this.nodeidCol = new Float64Array(0);
    this.flags = new Uint32Array(0);
    this.nlookupCol = new Float64Array(0);
    this.childrenCol = new Uint32Array(0);
    this.opensCol = new Uint32Array(0);
    this.parentCol = new Int32Array(0);
    this.linksCol = new Uint32Array(0);
    this.inoCol = new BigInt64Array(0);
    this.devCol = new Float64Array(0);
    this.provenCol = new Float64Array(0);
    this.handleType = new Int32Array(0);
    this.mountIdx = new Uint16Array(0);
    this.nameLen = new Uint16Array(0);
    this.handleLen = new Uint16Array(0);
    this.nameBytes = new Uint8Array(0);
    this.handleBytes = new Uint8Array(0);
    this.byNode = new Int32Array(0);
    this.byIdent = new Int32Array(0);
    this.grow(Math.max(16, initialCapacity));
  }

  get size(): number {
    return this.count;
  }

  /** Bytes the table's arrays hold (capacity, not use): for the stats and the memory benchmark. */
  get bytes(): number {
    const cols = [this.gen, this.nodeidCol, this.flags, this.nlookupCol, this.childrenCol, this.opensCol, this.parentCol,
      this.linksCol, this.inoCol, this.devCol, this.provenCol, this.handleType, this.mountIdx, this.nameLen, this.handleLen,
      this.nameBytes, this.handleBytes, this.byNode, this.byIdent];
    return cols.reduce((n, a) => n + a.byteLength, 0);
  }

  /** Non-directories in memory last seen with more than one link: while none, an unlink needs no bookkeeping of names. */
  multiLinked = 0;

  /** Record a non-directory's link count as just seen. */
  setLinks(inode: Inode, n: number): void {
    const old = this.linksCol[inode.slot]!;
    if (old > 1 !== n > 1) this.multiLinked += n > 1 ? 1 : -1;
    this.linksCol[inode.slot] = Math.min(n, 0xffffffff);
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
    this.gen[slot] = n.generation;
    this.nodeidCol[slot] = Number(n.nodeid);
    let f = (n.type & TYPE_MASK) | F_LIVE;
    if (n.reopenable) f |= F_REOPENABLE;
    if (n.handle) f |= F_HANDLE;
    this.flags[slot] = f;
    this.nlookupCol[slot] = 0;
    this.childrenCol[slot] = 0;
    this.opensCol[slot] = 0;
    this.parentCol[slot] = -1;
    this.linksCol[slot] = 0;
    this.inoCol[slot] = n.ino;
    this.devCol[slot] = n.dev;
    this.provenCol[slot] = -2;
    this.nameLen[slot] = NO_LEN;
    if (n.handle) {
      let m = this.mounts.indexOf(n.handle.mountId);
      if (m < 0) {
        if (this.mounts.length >= 0xffff) throw new RangeError('too many mounts below the shared directory');
        m = this.mounts.push(n.handle.mountId) - 1;
      }
      this.mountIdx[slot] = m;
      this.handleType[slot] = n.handle.type;
      const b = n.handle.bytes;
      this.handleLen[slot] = b.length;
      if (b.length <= HANDLE_INLINE) this.handleBytes.set(b, slot * HANDLE_INLINE);
      else this.longHandles.set(slot, Buffer.from(b));
    } else {
      this.handleLen[slot] = 0;
    }
    if (n.seal) this.seals.set(slot, n.seal);
    this.count++;
    this.insertNode(slot);
    if (n.indexed !== false) this.index(slot);
    return new Inode(this, slot, n.nodeid);
  }

  /** Point `inode`'s parent link at (parent, name), keeping the parents' child counts right. */
  setParent(inode: Inode, parent: Inode | null, name: Buffer | null): void {
    const slot = inode.slot;
    this.setName(slot, name);
    const old = this.parentCol[slot]!;
    const p = parent ? parent.slot : -1;
    if (old === p) return;
    if (p >= 0) this.childrenCol[p]!++;
    this.parentCol[slot] = p;
    if (old >= 0) {
      this.childrenCol[old]!--;
      this.maybeDropSlot(old);
    }
  }

  /** Count one more child link on `inode` (a caller that keeps a parent alive by hand). */
  addChild(inode: Inode, n: number): void {
    this.childrenCol[inode.slot] = this.childrenCol[inode.slot]! + n;
  }

  /** Drop `n` lookups; a count going below zero is a client bug: saturate and log, never abort. */
  forget(inode: Inode, n: number): void {
    const have = this.nlookupCol[inode.slot]!;
    if (n > have) {
      this.log.warn({ nodeid: String(inode.nodeid), nlookup: have, forget: n }, 'forget below zero lookups; saturating');
      this.nlookupCol[inode.slot] = 0;
    } else {
      this.nlookupCol[inode.slot] = have - n;
    }
    this.maybeDropSlot(inode.slot);
  }

  /** The identity was reused or removed: stop finding this inode by it (its nodeid stays valid). */
  unindex(inode: Inode): void {
    this.unindexSlot(inode.slot);
  }

  maybeDrop(inode: Inode): void {
    this.maybeDropSlot(inode.slot);
  }

  *all(): IterableIterator<Inode> {
    for (let s = 0; s < this.used; s++) if (this.flags[s]! & F_LIVE) yield this.view(s);
  }

  // ---- used by the Inode views

  view(slot: number): Inode {
    return new Inode(this, slot, BigInt(this.nodeidCol[slot]!));
  }

  /** (dev, ino) is the identity of an inode without a handle: it moves in the index with them. */
  setDevIno(slot: number, dev: number, ino: bigint): void {
    if (this.devCol[slot] === dev && this.inoCol[slot] === ino) return;
    const reindex = (this.flags[slot]! & (F_HANDLE | F_INDEXED)) === F_INDEXED;
    if (reindex) this.unindexSlot(slot);
    this.devCol[slot] = dev;
    this.inoCol[slot] = ino;
    if (reindex) this.index(slot);
  }

  setFlag(slot: number, bit: number, on: boolean): void {
    this.flags[slot] = on ? this.flags[slot]! | bit : this.flags[slot]! & ~bit;
  }

  nameOf(slot: number): Buffer | null {
    const len = this.nameLen[slot]!;
    if (len === NO_LEN) return null;
    if (len > NAME_INLINE) return Buffer.from(this.longNames.get(slot)!);
    return Buffer.from(this.nameBytes.subarray(slot * NAME_INLINE, slot * NAME_INLINE + len));
  }

  nameIs(slot: number, name: Buffer): boolean {
    const len = this.nameLen[slot]!;
    if (len !== name.length) return false;
    if (len > NAME_INLINE) return this.longNames.get(slot)!.equals(name);
    const o = slot * NAME_INLINE;
    for (let i = 0; i < len; i++) if (this.nameBytes[o + i] !== name[i]) return false;
    return true;
  }

  handleOf(slot: number): FileHandle | null {
    if (!(this.flags[slot]! & F_HANDLE)) return null;
    return { type: this.handleType[slot]!, bytes: Buffer.from(this.handleBytesAt(slot)), mountId: this.mounts[this.mountIdx[slot]!]! };
  }

  mountOf(slot: number): bigint | null {
    return this.flags[slot]! & F_HANDLE ? this.mounts[this.mountIdx[slot]!]! : null;
  }

  identityAt(slot: number): string {
    const h = this.handleOf(slot);
    return h ? handleKey(h) : `d${this.devCol[slot]}:${this.inoCol[slot]}`;
  }

  // ---- slots

  private handleBytesAt(slot: number): Uint8Array {
    const len = this.handleLen[slot]!;
    if (len > HANDLE_INLINE) return this.longHandles.get(slot)!;
    return this.handleBytes.subarray(slot * HANDLE_INLINE, slot * HANDLE_INLINE + len);
  }

  private setName(slot: number, name: Buffer | null): void {
    this.longNames.delete(slot);
    if (!name) {
      this.nameLen[slot] = NO_LEN;
      return;
    }
    // NAME_MAX is 255: a name always fits the length column
    this.nameLen[slot] = name.length;
    if (name.length > NAME_INLINE) this.longNames.set(slot, Buffer.from(name));
    else this.nameBytes.set(name, slot * NAME_INLINE);
  }

  private takeSlot(): number {
    if (this.freeHead < this.free.length) {
      const s = this.free[this.freeHead++]!;
      if (this.freeHead > 4096 && this.freeHead * 2 > this.free.length) {
        this.free = this.free.slice(this.freeHead);
        this.freeHead = 0;
      }
      return s;
    }
    if (this.used === this.cap) this.grow(this.cap * 2);
    return this.used++;
  }

  private maybeDropSlot(start: number): void {
    let slot = start;
    // iterative: dropping a child may drop its parent, and so on up the chain
    while (slot >= 0 && this.flags[slot]! & F_LIVE && this.nlookupCol[slot] === 0 && this.childrenCol[slot] === 0
      && this.opensCol[slot] === 0 && this.nodeidCol[slot] !== Number(this.rootId)) {
      const inode = this.view(slot);
      this.onDrop?.(inode);
      this.removeNode(slot);
      this.unindexSlot(slot);
      if (this.linksCol[slot]! > 1) this.multiLinked--;
      const parent = this.parentCol[slot]!;
      this.parentCol[slot] = -1;
      this.flags[slot] = 0;
      this.altLinks.delete(slot);
      this.openFiles.delete(slot);
      this.seals.delete(slot);
      this.longNames.delete(slot);
      this.longHandles.delete(slot);
      this.count--;
      this.free.push(slot);
      if (parent >= 0) this.childrenCol[parent]!--;
      slot = parent;
    }
  }

  private grow(cap: number): void {
    const old = this.cap;
    const g = <T>(a: T, make: (n: number) => T, per = 1): T => {
      const b = make(cap * per);
      (b as unknown as { set(x: T): void }).set(a);
      return b;
    };
    this.gen = g(this.gen, (n) => new BigUint64Array(n));
    this.nodeidCol = g(this.nodeidCol, (n) => new Float64Array(n));
    this.flags = g(this.flags, (n) => new Uint32Array(n));
    this.nlookupCol = g(this.nlookupCol, (n) => new Float64Array(n));
    this.childrenCol = g(this.childrenCol, (n) => new Uint32Array(n));
    this.opensCol = g(this.opensCol, (n) => new Uint32Array(n));
    this.parentCol = g(this.parentCol, (n) => new Int32Array(n));
    this.linksCol = g(this.linksCol, (n) => new Uint32Array(n));
    this.inoCol = g(this.inoCol, (n) => new BigInt64Array(n));
    this.devCol = g(this.devCol, (n) => new Float64Array(n));
    this.provenCol = g(this.provenCol, (n) => new Float64Array(n));
    this.handleType = g(this.handleType, (n) => new Int32Array(n));
    this.mountIdx = g(this.mountIdx, (n) => new Uint16Array(n));
    this.nameLen = g(this.nameLen, (n) => new Uint16Array(n));
    this.handleLen = g(this.handleLen, (n) => new Uint16Array(n));
    this.nameBytes = g(this.nameBytes, (n) => new Uint8Array(n), NAME_INLINE);
    this.handleBytes = g(this.handleBytes, (n) => new Uint8Array(n), HANDLE_INLINE);
    this.cap = cap;
    // indexes at most half full: rebuilt at twice the capacity
    this.byNode = new Int32Array(cap * 2).fill(EMPTY_SLOT);
    this.byIdent = new Int32Array(cap * 2).fill(EMPTY_SLOT);
    for (let s = 0; s < old; s++) {
      if (!(this.flags[s]! & F_LIVE)) continue;
      this.insertNode(s);
      if (this.flags[s]! & F_INDEXED) {
        this.flags[s] = this.flags[s]! & ~F_INDEXED;
        this.index(s);
      }
    }
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
      if (this.nodeidCol[s] === n) return s;
    }
  }

  private insertNode(slot: number): void {
    const t = this.byNode, mask = t.length - 1;
    let i = this.nodeHash(this.nodeidCol[slot]!);
    while (t[i] !== EMPTY_SLOT) i = (i + 1) & mask;
    t[i] = slot;
  }

  private removeNode(slot: number): void {
    const t = this.byNode;
    let i = this.nodeHash(this.nodeidCol[slot]!);
    const mask = t.length - 1;
    while (t[i] !== slot) {
      if (t[i] === EMPTY_SLOT) return;
      i = (i + 1) & mask;
    }
    this.shiftBack(t, i, (s) => this.nodeHash(this.nodeidCol[s]!));
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
    if (this.flags[slot]! & F_HANDLE) return this.handleHash(this.mountIdx[slot]!, this.handleType[slot]!, this.handleBytesAt(slot));
    return this.devInoHash(this.devCol[slot]!, this.inoCol[slot]!);
  }

  private handleHash(m: number, type: number, b: Uint8Array): number {
    let h = Math.imul(m ^ 0x811c9dc5, 0x01000193) ^ type;
    for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    return (h >>> 0) & (this.byIdent.length - 1);
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
      if (this.flags[s]! & F_HANDLE && this.mountIdx[s] === m && this.handleType[s] === type && this.handleLen[s] === b.length
        && bytesEqual(this.handleBytesAt(s), b)) return s;
    }
  }

  private findDevIno(dev: number, ino: bigint): number {
    const t = this.byIdent, mask = t.length - 1;
    for (let i = this.devInoHash(dev, ino); ; i = (i + 1) & mask) {
      const s = t[i]!;
      if (s === EMPTY_SLOT) return -1;
      if (!(this.flags[s]! & F_HANDLE) && this.devCol[s] === dev && this.inoCol[s] === ino) return s;
    }
  }

  /** Make `slot` the one found by its identity (an older holder of it is unindexed). */
  private index(slot: number): void {
    const other = this.flags[slot]! & F_HANDLE
      ? this.findHandle(this.mountIdx[slot]!, this.handleType[slot]!, this.handleBytesAt(slot))
      : this.findDevIno(this.devCol[slot]!, this.inoCol[slot]!);
    if (other === slot) return;
    if (other >= 0) this.unindexSlot(other);
    const t = this.byIdent, mask = t.length - 1;
    let i = this.identHash(slot);
    while (t[i] !== EMPTY_SLOT) i = (i + 1) & mask;
    t[i] = slot;
    this.flags[slot] = this.flags[slot]! | F_INDEXED;
  }

  private unindexSlot(slot: number): void {
    if (!(this.flags[slot]! & F_INDEXED)) return;
    const t = this.byIdent, mask = t.length - 1;
    let i = this.identHash(slot);
    while (t[i] !== slot) {
      if (t[i] === EMPTY_SLOT) return;
      i = (i + 1) & mask;
    }
    this.shiftBack(t, i, (s) => this.identHash(s));
    this.flags[slot] = this.flags[slot]! & ~F_INDEXED;
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
