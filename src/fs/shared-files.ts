/**
 * The open files every serving thread may read and write: fh -> (fd, node id, flags, device) in a
 * SharedArrayBuffer. One thread owns the table (the thread that runs the filesystem: it opens,
 * evicts, releases and withdraws fds); any thread may borrow an entry's fd for one read or write,
 * and a thread that created a file publishes its new fh and node id itself (keys nobody else has
 * yet: SharedCreations), until the owner takes them over. Fds are process-wide, so a borrowed fd works in any thread; what must not happen
 * is the owner closing it (and the number going to another file) under a borrower's syscall, so
 * a borrow is counted in the entry's state word and the owner withdraws an entry only when nobody
 * borrows it (compare-and-exchange), otherwise it skips it (eviction) or tries again (release).
 *
 * Layout: an open-addressing table of `capacity` entries (a power of two) of 9 Int32 words,
 * probed linearly (at most MAX_PROBE slots) from fh & mask. State word: 0 empty (ends a probe), -1 withdrawn (a tombstone,
 * reused), -2 claimed by a writer filling it in, 1 + borrows while published, with CLOSING set
 * once the owner wants it gone (no new borrows). A writer claims a slot by compare-and-exchange
 * (two writers never fill one slot) and writes its fields before its state (Atomics.store), so a
 * reader that sees it published sees its fields; a reader re-checks the fh after its borrow,
 * since the slot may have been withdrawn and reused between its look and its borrow.
 */

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
const CLAIMED = -2;
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
  /** files the other threads create (CREATE); without it they hand every CREATE over */
  creations?: SharedCreations;
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

  // ---- the owner (one thread); publish also a thread that created the file ----

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
      if (!this.withdrawAt(slot, CLAIMED)) return false;
    } else {
      slot = this.claimSlot(fh);
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

  /** Take the published entry at `slot` out (to WITHDRAWN, or CLAIMED to fill it in again) if nobody borrows it. */
  private withdrawAt(slot: number, to = WITHDRAWN): boolean {
    const i = slot * WORDS + STATE;
    const s = Atomics.load(this.w, i);
    return s > 0 && (s & COUNT) === 1 && Atomics.compareExchange(this.w, i, s, to) === s;
  }

  /** Claim an empty or withdrawn slot on `fh`'s probe path (the writer checked `fh` is not there). */
  private claimSlot(fh: bigint): number {
    let slot = Number(fh & BigInt(this.mask));
    for (let n = 0; n < this.probes; n++, slot = (slot + 1) & this.mask) {
      const i = slot * WORDS + STATE;
      const s = Atomics.load(this.w, i);
      if ((s === EMPTY || s === WITHDRAWN) && Atomics.compareExchange(this.w, i, s, CLAIMED) === s) return slot;
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
      if (s > 0 && w[b + FH_LO] === lo && w[b + FH_HI] === hi) return slot;
    }
    return -1;
  }

  private keyIs(b: number, fh: bigint): boolean {
    return this.w[b + FH_LO] === (Number(fh & 0xffff_ffffn) | 0) && this.w[b + FH_HI] === (Number((fh >> 32n) & 0xffff_ffffn) | 0);
  }
}

/** A file another serving thread created (SharedCreations): what the owner takes in. */
export interface CreatedFile {
  nodeid: bigint;
  fh: bigint;
  parent: bigint;
  /** the open file's fd and the inode's O_PATH fd: ownership passes to the owner */
  fd: number;
  pathFd: number;
  /** the open file's host flags, as a reopen replays them */
  flags: number;
  /** a copy */
  name: Buffer;
}

/** header: Int32 words CREATING, PENDING, ENABLED (then padding), BigInt64 words NEXT_NODE, NEXT_FH */
const CREATING = 0;
const PENDING = 1;
const ENABLED = 2;
const NEXT_NODE = 2;
const NEXT_FH = 3;
const HEADER_BYTES = 64;
/** a ring: Int32 head (the owner's) and tail (its thread's), padded to a cache line */
const RING_HEAD_BYTES = 64;
/**
 * Files a thread may have posted and the owner not taken in yet; past them it hands CREATEs over.
 * Their two fds each are outside the fd cache until taken in (the owner takes one in when a
 * request names it, its RELEASE at the latest); the cache leaves room for them in the budget.
 */
const RING_SLOTS = 4;
/** a slot: Int32 nodeid lo, hi, fh lo, hi, parent lo, hi, fd, pathFd, flags, name length; then the name */
const SLOT_WORDS = 10;
const SLOT_BYTES = SLOT_WORDS * 4 + 256;
const RING_BYTES = RING_HEAD_BYTES + RING_SLOTS * SLOT_BYTES;

/**
 * Files the other serving threads create (CREATE) while the owner keeps the books: a thread
 * allocates the node id and the fh from counters it shares with the owner (InodeStore and
 * HandleTable take theirs from the same words), makes the file on the host, posts what the owner
 * needs to its own ring (one producer, one consumer) and answers the kernel. The owner takes the
 * posted files in before it serves anything that may name one: an unknown node id or fh (the
 * kernel only names them after the answer, which comes after the post), and, after waiting for
 * creations in flight to be posted, before it makes a new inode of a handle it does not know or
 * looks at the victim of a removal (the same file reached by name before it was taken in).
 *
 * CREATING counts threads between the start of a creation and its post; PENDING counts files
 * posted and not yet taken in. A thread adds to PENDING before it leaves CREATING, so both at 0
 * means nothing is on its way.
 */
export class SharedCreations {
  readonly buffer: SharedArrayBuffer;
  readonly rings: number;
  private readonly w: Int32Array;
  private readonly ids: BigInt64Array;
  private readonly bytes: Uint8Array;
  private readonly slot = { nodeid: 0n, fh: 0n, parent: 0n, fd: -1, pathFd: -1, flags: 0, name: Buffer.alloc(0) } as CreatedFile;

  private constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.w = new Int32Array(buffer);
    this.ids = new BigInt64Array(buffer, 0, HEADER_BYTES / 8);
    this.bytes = new Uint8Array(buffer);
    this.rings = (buffer.byteLength - HEADER_BYTES) / RING_BYTES;
    if (!Number.isInteger(this.rings) || this.rings < 1) throw new RangeError(`shared creations: ${buffer.byteLength} bytes is not a whole number of rings`);
  }

  /** Rings for `threads` threads (index 1..threads: the owner is 0 and has none); node ids and fhs start at `firstNode` and 1. */
  static create(threads: number, firstNode: bigint): SharedCreations {
    const c = new SharedCreations(new SharedArrayBuffer(HEADER_BYTES + Math.max(1, threads) * RING_BYTES));
    c.ids[NEXT_NODE] = firstNode;
    c.ids[NEXT_FH] = 1n;
    return c;
  }

  static attach(buffer: SharedArrayBuffer): SharedCreations {
    return new SharedCreations(buffer);
  }

  // ---- ids (any thread) ----

  allocNode(): bigint {
    return Atomics.add(this.ids, NEXT_NODE, 1n);
  }

  allocFh(): bigint {
    return Atomics.add(this.ids, NEXT_FH, 1n);
  }

  /** The next node id (or fh, `which` 'fh') to be handed out. */
  next(which: 'node' | 'fh'): bigint {
    return Atomics.load(this.ids, which === 'node' ? NEXT_NODE : NEXT_FH);
  }

  /** Hand out ids from `v` on, if that is later than the next one (a successor continues after its predecessor). */
  raise(which: 'node' | 'fh', v: bigint): void {
    const i = which === 'node' ? NEXT_NODE : NEXT_FH;
    for (let cur = Atomics.load(this.ids, i); v > cur;) {
      const was = Atomics.compareExchange(this.ids, i, cur, v);
      if (was === cur) return;
      cur = was;
    }
  }

  /** The most fds files on their way to the owner hold (two each): the owner's fd cache leaves them room. */
  get fdsOutside(): number {
    return this.rings * RING_SLOTS * 2;
  }

  /** The owner lets the threads create (it made room for fdsOutside in its budget). */
  enable(): void {
    Atomics.store(this.w, ENABLED, 1);
  }

  // ---- a creating thread (ring `ring`, 1..rings) ----

  /**
   * Start a creation: false (hand the CREATE over) when the owner has not enabled them or the
   * ring has no free slot. A true must be followed by `end`, after `post` if the file was made.
   */
  begin(ring: number): boolean {
    if (Atomics.load(this.w, ENABLED) === 0) return false;
    const h = this.head(ring);
    if (Atomics.load(this.w, h + 1) - Atomics.load(this.w, h) >= RING_SLOTS) return false;
    Atomics.add(this.w, CREATING, 1);
    return true;
  }

  post(ring: number, c: CreatedFile): void {
    const h = this.head(ring);
    const tail = Atomics.load(this.w, h + 1);
    const base = HEADER_BYTES + (ring - 1) * RING_BYTES + RING_HEAD_BYTES + (tail % RING_SLOTS) * SLOT_BYTES;
    const w = this.w;
    const i = base / 4;
    w[i] = Number(c.nodeid & 0xffff_ffffn) | 0;
    w[i + 1] = Number(c.nodeid >> 32n) | 0;
    w[i + 2] = Number(c.fh & 0xffff_ffffn) | 0;
    w[i + 3] = Number(c.fh >> 32n) | 0;
    w[i + 4] = Number(c.parent & 0xffff_ffffn) | 0;
    w[i + 5] = Number(c.parent >> 32n) | 0;
    w[i + 6] = c.fd;
    w[i + 7] = c.pathFd;
    w[i + 8] = c.flags;
    w[i + 9] = c.name.length;
    this.bytes.set(c.name, base + SLOT_WORDS * 4);
    Atomics.add(w, PENDING, 1);
    Atomics.store(w, h + 1, tail + 1);
  }

  end(): void {
    if (Atomics.sub(this.w, CREATING, 1) === 1) Atomics.notify(this.w, CREATING);
  }

  // ---- the owner ----

  /** Files posted and not taken in, or creations on their way. */
  get busy(): boolean {
    return Atomics.load(this.w, PENDING) !== 0 || Atomics.load(this.w, CREATING) !== 0;
  }

  /** Take in every posted file (`take` owns its fds); with `wait`, first wait for the creations in flight to be posted. */
  drain(take: (c: CreatedFile) => void, wait = false): void {
    const w = this.w;
    if (wait) for (let n = Atomics.load(w, CREATING); n !== 0; n = Atomics.load(w, CREATING)) Atomics.wait(w, CREATING, n, 5);
    if (Atomics.load(w, PENDING) === 0) return;
    for (let ring = 1; ring <= this.rings; ring++) {
      const h = this.head(ring);
      for (let head = Atomics.load(w, h); head !== Atomics.load(w, h + 1); head++) {
        const base = HEADER_BYTES + (ring - 1) * RING_BYTES + RING_HEAD_BYTES + (head % RING_SLOTS) * SLOT_BYTES;
        const i = base / 4;
        const c = this.slot;
        c.nodeid = (BigInt(w[i + 1]! >>> 0) << 32n) | BigInt(w[i]! >>> 0);
        c.fh = (BigInt(w[i + 3]! >>> 0) << 32n) | BigInt(w[i + 2]! >>> 0);
        c.parent = (BigInt(w[i + 5]! >>> 0) << 32n) | BigInt(w[i + 4]! >>> 0);
        c.fd = w[i + 6]!;
        c.pathFd = w[i + 7]!;
        c.flags = w[i + 8]!;
        c.name = Buffer.from(this.bytes.subarray(base + SLOT_WORDS * 4, base + SLOT_WORDS * 4 + Math.min(w[i + 9]!, 255)));
        // the slot is free once the head moves past it
        Atomics.store(w, h, head + 1);
        Atomics.sub(w, PENDING, 1);
        take({ ...c });
      }
    }
  }

  /** Int32 index of ring `ring`'s head word (its tail follows). */
  private head(ring: number): number {
    if (!Number.isInteger(ring) || ring < 1 || ring > this.rings) throw new RangeError(`shared creations: no ring ${ring}`);
    return (HEADER_BYTES + (ring - 1) * RING_BYTES) / 4;
  }
}
