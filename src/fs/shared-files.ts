/**
 * The open files every serving thread may read and write: fh -> (fd, node id, flags, device) in a
 * SharedArrayBuffer. One thread owns the table (the thread that runs the filesystem: it opens,
 * evicts and releases fds and is the only writer); any thread may borrow an entry's fd for one
 * read or write. Fds are process-wide, so a borrowed fd works in any thread; what must not happen
 * is the owner closing it (and the number going to another file) under a borrower's syscall, so
 * a borrow is counted in the entry's state word and the owner withdraws an entry only when nobody
 * borrows it (compare-and-exchange), otherwise it skips it (eviction) or tries again (release).
 *
 * Layout: an open-addressing table of `capacity` entries (a power of two) of 9 Int32 words,
 * probed linearly (at most MAX_PROBE slots) from fh & mask. State word: 0 empty (ends a probe), -1 withdrawn (a tombstone,
 * reused by the owner), 1 + borrows while published, with CLOSING set once the owner wants it
 * gone (no new borrows). The owner writes an entry's fields before its state (Atomics.store), so
 * a reader that sees it published sees its fields; a reader re-checks the fh after its borrow,
 * since the slot may have been withdrawn and reused between its look and its borrow.
 */

import type { SharedInodeLink } from './shared-inodes.js';

const WORDS = 9;
const STATE = 0;
const FH_LO = 1;
const FH_HI = 2;
const NODE_LO = 3;
const NODE_HI = 4;
const FD = 5;
const FLAGS = 6;
const DEV = 7;
const MARKS = 8;
const EMPTY = 0;
const WITHDRAWN = -1;
const CLOSING = 1 << 30;
const COUNT = CLOSING - 1;
/**
 * Probe length: withdrawn slots are never emptied (a reader may be passing them), so once every
 * slot was used a miss would scan the whole table; past this many slots a key is not published
 * (the owner serves it) and a lookup gives up.
 */
const MAX_PROBE = 32;
/** an entry's mark: POSIX lock owners took locks through the fh (its FLUSH must drop them: the owner serves it) */
export const SHARED_LOCK_OWNERS = 1;
/** an inode's mark: it is on the shared root's mount, where the rename watches (the owner's, each thread's) keep proofs of place */
export const SHARED_ROOT_MOUNT = 2;

/** What a borrower reads of its entry. */
export interface SharedFile {
  fd: number;
  /** open(2) flags the fd was opened with on the host */
  flags: number;
  /** the inode's device (devOf): NowaitIo's per-filesystem refusals */
  dev: number;
  /** SHARED_LOCK_OWNERS, SHARED_ROOT_MOUNT */
  marks: number;
}

/**
 * What the serving threads share: open files' fds by fh, and inodes' O_PATH fds by node id (their
 * `flags` hold the inode's S_IFMT type).
 */
export interface SharedFds {
  files: SharedFileTable;
  inodes: SharedFileTable;
  /** whether the other threads may remove names (UNLINK, RMDIR) */
  removals: SharedRemovalGate;
  /** the inode table's chunks and identity index, for the threads' LOOKUPs of known inodes (src/fs/shared-inodes.ts) */
  inodeTable?: SharedInodeLink;
}

const WATCHING = 0;
const REMOVING = 1;

/**
 * Whether the serving threads other than the owner may remove a name (UNLINK, RMDIR) without the
 * owner seeing it. The owner must see a removal whose victim it keeps books on: an inode with
 * open files (it may live on unlinked: its fds must then never be evicted) or with other names
 * (a reopen must then walk another one). While it has any such inode it watches, and the threads
 * hand every removal over; while it has none, a removal is only the host's unlinkat.
 *
 * Two Int32 words: WATCHING (set by the owner) and REMOVING (threads in a removal now). A thread
 * adds itself to REMOVING, then reads WATCHING; the owner sets WATCHING, then waits for REMOVING
 * to reach 0. Atomics are sequentially consistent, so one of the two sees the other: no removal
 * the owner did not see finishes after it starts watching.
 */
export class SharedRemovalGate {
  readonly buffer: SharedArrayBuffer;
  private readonly w: Int32Array;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.w = new Int32Array(buffer);
    if (this.w.length !== 2) throw new RangeError(`shared removal gate: ${buffer.byteLength} bytes, not 8`);
  }

  /** A new gate, not watching. */
  static create(): SharedRemovalGate {
    return new SharedRemovalGate(new SharedArrayBuffer(8));
  }

  /** Another thread's view of the gate made by `create`. */
  static attach(buffer: SharedArrayBuffer): SharedRemovalGate {
    return new SharedRemovalGate(buffer);
  }

  // ---- the owner ----

  /**
   * Start (true) or stop watching removals. Starting returns once no other thread is in a removal,
   * before the owner relies on seeing every one (before the reply that opens a file, say).
   */
  watch(on: boolean): void {
    const w = this.w;
    if (!on) {
      Atomics.store(w, WATCHING, 0);
      return;
    }
    if (Atomics.load(w, WATCHING) === 1) return;
    Atomics.store(w, WATCHING, 1);
    // a removal takes one unlinkat: wait in short steps
    for (let n = Atomics.load(w, REMOVING); n !== 0; n = Atomics.load(w, REMOVING)) Atomics.wait(w, REMOVING, n, 5);
  }

  get watching(): boolean {
    return Atomics.load(this.w, WATCHING) === 1;
  }

  // ---- the other threads ----

  /** Enter a removal: false when the owner watches (hand the request over). A true must be followed by `leave`. */
  enter(): boolean {
    const w = this.w;
    Atomics.add(w, REMOVING, 1);
    if (Atomics.load(w, WATCHING) === 0) return true;
    this.leave();
    return false;
  }

  leave(): void {
    if (Atomics.sub(this.w, REMOVING, 1) === 1) Atomics.notify(this.w, REMOVING);
  }
}

export class SharedFileTable {
  readonly buffer: SharedArrayBuffer;
  readonly capacity: number;
  private readonly w: Int32Array;
  private readonly mask: number;
  /** slots a lookup or a publish looks at from a key's home: keys are sequential, so few collide */
  private readonly probes: number;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.w = new Int32Array(buffer);
    this.capacity = this.w.length / WORDS;
    if (!Number.isInteger(this.capacity) || this.capacity < 2 || (this.capacity & (this.capacity - 1)) !== 0) {
      throw new RangeError(`shared file table: ${buffer.byteLength} bytes is not a power-of-two number of entries`);
    }
    this.mask = this.capacity - 1;
    this.probes = Math.min(this.capacity, MAX_PROBE);
  }

  /** A new table of `capacity` entries (rounded up to a power of two, at least 2). */
  static create(capacity: number): SharedFileTable {
    let n = 2;
    while (n < capacity) n *= 2;
    return new SharedFileTable(new SharedArrayBuffer(n * WORDS * 4));
  }

  /** Another thread's view of the table made by `create`. */
  static attach(buffer: SharedArrayBuffer): SharedFileTable {
    return new SharedFileTable(buffer);
  }

  // ---- the owner (one thread) ----

  /**
   * Publish (or replace) `fh`'s fd. False when the table is full or the entry is borrowed right
   * now (a replacement must wait for its borrowers): the fh is then served by the owner alone.
   */
  publish(fh: bigint, nodeid: bigint, fd: number, flags: number, dev: number, marks = 0): boolean {
    let slot = this.find(fh);
    if (slot >= 0) {
      if (this.w[slot * WORDS + FD] === fd) {
        Atomics.store(this.w, slot * WORDS + MARKS, marks);
        return true;
      }
      if (!this.withdrawAt(slot)) return false;
    } else {
      slot = this.freeSlot(fh);
      if (slot < 0) return false;
    }
    const b = slot * WORDS;
    const w = this.w;
    w[b + FH_LO] = Number(fh & 0xffff_ffffn) | 0;
    w[b + FH_HI] = Number((fh >> 32n) & 0xffff_ffffn) | 0;
    w[b + NODE_LO] = Number(nodeid & 0xffff_ffffn) | 0;
    w[b + NODE_HI] = Number((nodeid >> 32n) & 0xffff_ffffn) | 0;
    w[b + FD] = fd;
    w[b + FLAGS] = flags;
    w[b + DEV] = dev | 0;
    w[b + MARKS] = marks;
    Atomics.store(w, b + STATE, 1);
    return true;
  }

  /** Set or clear a mark (SHARED_LOCK_OWNERS) of `fh`'s entry, if published: before the reply that makes it true. */
  mark(fh: bigint, bit: number, on: boolean): void {
    const slot = this.find(fh);
    if (slot < 0) return;
    if (on) Atomics.or(this.w, slot * WORDS + MARKS, bit);
    else Atomics.and(this.w, slot * WORDS + MARKS, ~bit);
  }

  /**
   * Withdraw `fh`'s entry. True when it is gone (or was never published); false when a thread
   * borrows it now: it stays published, refusing new borrows if `closing` (the caller tries again
   * later, and must not close the fd before this returns true).
   */
  withdraw(fh: bigint, closing = false): boolean {
    const slot = this.find(fh);
    if (slot < 0) return true;
    if (this.withdrawAt(slot)) return true;
    if (closing) Atomics.or(this.w, slot * WORDS + STATE, CLOSING);
    return false;
  }

  /** Borrowers of `fh`'s entry right now (0 when not published): for tests and the owner's checks. */
  borrowers(fh: bigint): number {
    const slot = this.find(fh);
    return slot < 0 ? 0 : (Atomics.load(this.w, slot * WORDS + STATE) & COUNT) - 1;
  }

  private withdrawAt(slot: number): boolean {
    const i = slot * WORDS + STATE;
    const s = Atomics.load(this.w, i);
    return (s & COUNT) === 1 && Atomics.compareExchange(this.w, i, s, WITHDRAWN) === s;
  }

  /** An empty or withdrawn slot on `fh`'s probe path (the owner checked `fh` is not there). */
  private freeSlot(fh: bigint): number {
    let slot = Number(fh & BigInt(this.mask));
    for (let n = 0; n < this.probes; n++, slot = (slot + 1) & this.mask) {
      const s = Atomics.load(this.w, slot * WORDS + STATE);
      if (s === EMPTY || s === WITHDRAWN) return slot;
    }
    return -1;
  }

  // ---- any thread ----

  /**
   * Borrow `fh`'s fd if it is published for `nodeid`: the slot, to read with `fileAt` and give
   * back with `release`; -1 when it is not (the owner serves the request).
   */
  borrow(fh: bigint, nodeid: bigint): number {
    const slot = this.find(fh);
    if (slot < 0) return -1;
    const w = this.w;
    const i = slot * WORDS + STATE;
    for (;;) {
      const s = Atomics.load(w, i);
      if (s <= 0 || (s & CLOSING) !== 0) return -1;
      if (Atomics.compareExchange(w, i, s, s + 1) === s) break;
    }
    // the slot may have been withdrawn and reused between find() and the borrow
    const b = slot * WORDS;
    if (!this.keyIs(b, fh) || w[b + NODE_LO] !== (Number(nodeid & 0xffff_ffffn) | 0) || w[b + NODE_HI] !== (Number((nodeid >> 32n) & 0xffff_ffffn) | 0)) {
      Atomics.sub(w, i, 1);
      return -1;
    }
    return slot;
  }

  /** The borrowed entry's fields (valid until `release`). */
  fileAt(slot: number, into: SharedFile): SharedFile {
    const b = slot * WORDS;
    into.fd = this.w[b + FD]!;
    into.flags = this.w[b + FLAGS]!;
    into.dev = this.w[b + DEV]! >>> 0;
    into.marks = Atomics.load(this.w, b + MARKS);
    return into;
  }

  release(slot: number): void {
    Atomics.sub(this.w, slot * WORDS + STATE, 1);
  }

  /** The slot of published (or closing) `fh`, else -1. */
  private find(fh: bigint): number {
    const lo = Number(fh & 0xffff_ffffn) | 0;
    const hi = Number((fh >> 32n) & 0xffff_ffffn) | 0;
    const w = this.w;
    let slot = lo & this.mask;
    for (let n = 0; n < this.probes; n++, slot = (slot + 1) & this.mask) {
      const b = slot * WORDS;
      const s = Atomics.load(w, b + STATE);
      if (s === EMPTY) return -1;
      if (s !== WITHDRAWN && w[b + FH_LO] === lo && w[b + FH_HI] === hi) return slot;
    }
    return -1;
  }

  private keyIs(b: number, fh: bigint): boolean {
    return this.w[b + FH_LO] === (Number(fh & 0xffff_ffffn) | 0) && this.w[b + FH_HI] === (Number((fh >> 32n) & 0xffff_ffffn) | 0);
  }
}
