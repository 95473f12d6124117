import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { E, FsError } from '../errors.js';
import { LogOnce } from '../log.js';

/** 'path': an inode's O_PATH fd. 'file': the fd of an open file or directory (a FUSE fh). */
export type FdKind = 'path' | 'file';

interface FdEntry {
  key: string;
  fd: number;
  kind: FdKind;
  /** borrows in progress: a borrowed fd is never closed */
  pins: number;
  /** never evicted (root, no handle, unlinked-but-open, locked, O_TMPFILE) */
  permanent: boolean;
}

/** Never evicted, never counted: keeps each LRU from emptying (see the class comment). */
const SENTINEL = '\u0000';
const SENTINEL_ENTRY: FdEntry = { key: SENTINEL, fd: -1, kind: 'path', pins: 0, permanent: true };

/**
 * What another serving thread may borrow of the cache: told of each fd as it is cached
 * (`publish`), and asked before one is closed (`withdraw`): false while a thread borrows it, and
 * then the fd stays open (an evicted one is kept like a borrowed one; a removed one is closed once
 * `withdraw` agrees, tried again every millisecond).
 */
export interface FdShare {
  publish(key: string, fd: number, kind: FdKind): void;
  /** `closing`: the entry left the cache, lend it no more */
  withdraw(key: string, kind: FdKind, closing: boolean): boolean;
}

export interface FdCacheCounters {
  hits: number;
  misses: number;
  evictions: number;
  emfile: number;
}

/**
 * The sole owner of every fd the server holds on the shared tree. Entries live in a Map; every
 * entry that is not permanent is also in an LRU (lru-cache), one for O_PATH fds and one for
 * open-file fds. Before a new fd is opened, `reserve()` evicts idle entries until the total is
 * below the budget: O_PATH fds first (they can always be reopened), open files only under pressure
 * (reopening one fails with ESTALE if the host renamed or unlinked it meanwhile). A borrowed entry
 * stays in its LRU (a borrow is a `get`, which only refreshes it) and is skipped by eviction.
 *
 * Why a sentinel: lru-cache clears itself when its last entry is deleted, filling arrays as long
 * as `max` (the budget, 20,000 by default): profiled at ~30% of the server's CPU on a
 * create/close loop. Each LRU therefore always holds one sentinel entry that is never evicted.
 */
export class FdCache {
  readonly budget: number;
  private readonly entries = new Map<string, FdEntry>();
  /** entries removed while borrowed, by fd: closed by their last unpin */
  private readonly doomed = new Map<number, FdEntry>();
  private readonly pathLru: LRUCache<string, FdEntry>;
  private readonly fileLru: LRUCache<string, FdEntry>;
  private readonly once: LogOnce;
  readonly counters: FdCacheCounters = { hits: 0, misses: 0, evictions: 0, emfile: 0 };

  constructor(
    budget: number,
    private readonly closeFd: (fd: number) => void,
    private readonly log: Logger,
    /** called after an entry was evicted (the owner of a dir cursor must seek again) */
    private readonly onEvict: ((key: string) => void) | null = null,
    /** other serving threads' use of the cached fds (src/fs/shared-files.ts); null: one thread */
    private readonly share: FdShare | null = null,
  ) {
    if (!Number.isInteger(budget) || budget < 2) throw new RangeError(`fd budget must be an integer >= 2, got ${budget}`);
    this.budget = budget;
    // max only sizes lru-cache's arrays: the budget is enforced by reserve(), so it is never reached
    this.pathLru = new LRUCache<string, FdEntry>({ max: budget + 2 });
    this.fileLru = new LRUCache<string, FdEntry>({ max: budget + 2 });
    this.pathLru.set(SENTINEL, SENTINEL_ENTRY);
    this.fileLru.set(SENTINEL, SENTINEL_ENTRY);
    this.once = new LogOnce(log);
  }

  /** fds currently open: cached, borrowed and those waiting for their last borrower */
  get size(): number {
    return this.entries.size + this.doomed.size + this.lent;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Borrow the fd of `key` if cached (a hit); undefined on a miss. Pair with unpin(). */
  pin(key: string): number | undefined {
    const e = this.entries.get(key);
    if (!e) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    e.pins++;
    if (!e.permanent) this.lruOf(e).get(key); // most recently used
    return e.fd;
  }

  unpin(key: string, fd: number): void {
    const e = this.entries.get(key);
    if (!e || e.fd !== fd) {
      // removed while borrowed: the last borrower closes it
      const d = this.doomed.get(fd);
      if (d && --d.pins <= 0) {
        this.doomed.delete(fd);
        this.closeLater(d);
      }
      return;
    }
    if (e.pins <= 0) {
      this.log.error({ key }, 'fd cache unpin without pin');
      return;
    }
    e.pins--;
  }

  /**
   * Make room for one more fd: evict idle entries until the total is below the budget. Throws
   * EMFILE (logged once) when every entry is borrowed or permanent.
   */
  reserve(): void {
    while (this.size >= this.budget) {
      if (!this.evictOne()) {
        this.counters.emfile++;
        this.once.warn('budget', { budget: this.budget }, 'fd budget exhausted: every cached fd is in use or pinned; failing with EMFILE (raise --fd-budget)');
        throw new FsError(E.EMFILE, 'fd budget exhausted');
      }
    }
  }

  /**
   * Make an fd with `open` (which returns it or a negative errno, or throws a coded error). When
   * the process hit its fd limit below the budget (fds the cache does not count: the transport's,
   * transient ones), evict one idle entry and try once more; the log says so once.
   */
  opened(open: () => number): number {
    let r: number;
    try {
      r = open();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if ((code === 'EMFILE' || code === 'ENFILE') && this.evictForKernel(code)) return open();
      throw e;
    }
    if ((r === -E.EMFILE || r === -E.ENFILE) && this.evictForKernel(r === -E.EMFILE ? 'EMFILE' : 'ENFILE')) return open();
    return r;
  }

  private evictForKernel(code: string): boolean {
    if (!this.evictOne()) return false;
    this.once.warn('kernel-emfile', { code }, 'process fd limit reached below the fd budget; evicting (lower --fd-budget or raise RLIMIT_NOFILE)');
    return true;
  }

  /** Evict one idle entry (O_PATH first). False when nothing is evictable. */
  evictOne(): boolean {
    const victim = this.popIdle(this.pathLru) ?? this.popIdle(this.fileLru);
    if (!victim) return false;
    this.entries.delete(victim.key);
    this.counters.evictions++;
    this.closeFd(victim.fd);
    this.onEvict?.(victim.key);
    return true;
  }

  /** The least recently used entry nobody borrows, taken out of `lru`; borrowed ones stay. */
  private popIdle(lru: LRUCache<string, FdEntry>): FdEntry | undefined {
    let busy: FdEntry[] | null = null;
    let victim: FdEntry | undefined;
    for (let n = lru.size; n > 0; n--) {
      const e = lru.pop();
      if (!e) break;
      if (e === SENTINEL_ENTRY) continue; // put back below, newest: it is never evicted
      if (e.pins > 0 || (this.share !== null && !this.share.withdraw(e.key, e.kind, false))) (busy ??= []).push(e);
      else {
        victim = e;
        break;
      }
    }
    lru.set(SENTINEL, SENTINEL_ENTRY);
    if (busy) for (const e of busy) lru.set(e.key, e);
    return victim;
  }

  /**
   * Take ownership of a freshly opened fd (call reserve() before opening it). The entry starts
   * borrowed once (pins = 1) so that the caller can use it; unpin() when done.
   */
  insertPinned(key: string, fd: number, kind: FdKind, permanent = false): void {
    const old = this.entries.get(key);
    if (old) {
      // Safe because a key maps to one inode or one fh: a second insert is a logic error; keep the
      // newer fd and close the old one only if nobody borrows it.
      this.log.error({ key }, 'fd cache: duplicate insert');
      this.remove(key);
    }
    const e: FdEntry = { key, fd, kind, pins: 1, permanent };
    this.entries.set(key, e);
    if (!permanent) this.lruOf(e).set(key, e);
    this.share?.publish(key, fd, kind);
  }

  /** Mark an entry never-evictable (or evictable again). */
  setPermanent(key: string, permanent: boolean): void {
    const e = this.entries.get(key);
    if (!e || e.permanent === permanent) return;
    e.permanent = permanent;
    if (permanent) this.lruOf(e).delete(key);
    else this.lruOf(e).set(key, e);
  }

  isPermanent(key: string): boolean {
    return this.entries.get(key)?.permanent ?? false;
  }

  /** Close and forget `key` (inode dropped, file released). A borrowed fd is closed by the last unpin. */
  remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.lruOf(e).delete(key);
    // Safe because a borrowed fd may be inside a syscall on a pool thread: closing it now could
    // let the number be reused under that syscall. The last unpin closes it instead.
    if (e.pins > 0) this.doomed.set(e.fd, e);
    else this.closeLater(e);
  }

  /** fds withdrawn from the cache that another thread still borrows: closed once it gives them back */
  private lent = 0;

  /** Close a removed entry's fd, once no other thread borrows it. */
  private closeLater(e: FdEntry): void {
    if (this.share === null || this.share.withdraw(e.key, e.kind, true)) {
      this.closeFd(e.fd);
      return;
    }
    this.lent++;
    const retry = (): void => {
      if (!this.share!.withdraw(e.key, e.kind, true)) {
        setTimeout(retry, 1);
        return;
      }
      this.lent--;
      this.closeFd(e.fd);
    };
    setTimeout(retry, 1);
  }

  /** Close everything (destroy). */
  clear(): void {
    for (const e of this.entries.values()) this.closeFd(e.fd);
    for (const e of this.doomed.values()) this.closeFd(e.fd);
    this.entries.clear();
    this.doomed.clear();
    this.pathLru.clear();
    this.fileLru.clear();
    this.pathLru.set(SENTINEL, SENTINEL_ENTRY);
    this.fileLru.set(SENTINEL, SENTINEL_ENTRY);
  }

  private lruOf(e: FdEntry): LRUCache<string, FdEntry> {
    return e.kind === 'path' ? this.pathLru : this.fileLru;
  }
}
