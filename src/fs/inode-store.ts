import type { Logger } from 'pino';
import { handleKey, type FileHandle } from '../handle/file-handle.js';

/**
 * What the server knows of one host inode. Identity is the sealed file handle (or dev:ino on a
 * filesystem without handles); the fd is only a cache entry (FdCache key `fdKey`).
 */
export class Inode {
  /** lookups the client holds (FUSE nlookup); saturates at 0 */
  nlookup = 0;
  /** inodes whose parent link points here: a parent stays known while a child may need the re-walk */
  children = 0;
  /** open files and directories (fh) on this inode */
  opens = 0;
  /** the host unlinked it while the client still references it: its fd cannot be reopened */
  unlinked = false;
  /** parent link (the last name the client reached it by): used by the by-path reopen */
  parent: Inode | null = null;
  name: Buffer | null = null;
  /**
   * Other names (hard links) the server has seen for a non-directory, by parent node id: when the
   * parent link's name goes, one of them takes its place. Null until a second name is seen.
   */
  altLinks: AltLink[] | null = null;
  /** a non-directory's link count when last seen (InodeStore.setLinks); 0 = not seen */
  links = 0;
  /** the last file opened on it (an fh still open): xattr reads go through its real fd, not /proc */
  openFile: { readonly fdKey: string } | null = null;
  /** inode number and device as the host reported them at the last lookup through an fd (LOOKUP's fast path checks them) */
  ino = -1n;
  dev = -1;
  /** MoveWatch epoch at which it was last proven to be beneath the root (-2: never) */
  proven = -2;
  /**
   * MAC of the handle: given by a record (verified when it was read), or made on first need
   * (sealOf in records.ts) when the record leaves memory. Null until then: a handle the server got
   * from name_to_handle_at and holds in memory needs no MAC to be trusted.
   */
  seal: Buffer | null;
  readonly fdKey: string;

  constructor(
    readonly nodeid: bigint,
    readonly generation: bigint,
    /** S_IFMT bits of the mode */
    readonly type: number,
    readonly handle: FileHandle | null,
    seal: Buffer | null,
    /** index key in the store */
    readonly identity: string,
    /** the fd can never be reopened (root, no handle, other mount, tmpfile): pinned for life */
    public reopenable: boolean,
  ) {
    this.seal = seal;
    this.fdKey = `i${nodeid}`;
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
  const l = (inode.altLinks ??= []);
  if (l.length >= MAX_ALT_LINKS) l.shift();
  l.push({ parent, name });
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
 * The key an inode is found by: its file handle, or (dev, ino) where the filesystem has no handles
 * (such an inode is pinned: its number alone cannot prove identity on a reopen).
 */
export function identityOf(h: FileHandle | null, st: { devMajor: number; devMinor: number; ino: bigint }): string {
  return h ? handleKey(h) : `d${st.devMajor}:${st.devMinor}:${st.ino}`;
}

/**
 * nodeid <-> inode and identity -> inode (virtiofsd inode_store.rs). Node ids come from a counter
 * and are never reused. An inode is dropped when the client forgot it, no child links to it and no
 * file is open on it; dropping it releases its fd through `onDrop` and may drop its parent.
 */
export class InodeStore {
  private readonly byNodeId = new Map<bigint, Inode>();
  private readonly byIdentity = new Map<string, Inode>();
  private nextId: bigint;

  constructor(
    private readonly rootId: bigint,
    private readonly log: Logger,
    /** an inode left memory: release its fd, keep its record */
    private readonly onDrop: ((inode: Inode) => void) | null = null,
  ) {
    this.nextId = rootId + 1n;
  }

  get size(): number {
    return this.byNodeId.size;
  }

  /** Non-directories in memory last seen with more than one link: while none, an unlink needs no bookkeeping of names. */
  multiLinked = 0;

  /** Record a non-directory's link count as just seen. */
  setLinks(inode: Inode, n: number): void {
    if (inode.links > 1 !== n > 1) this.multiLinked += n > 1 ? 1 : -1;
    inode.links = n;
  }

  get(nodeid: bigint): Inode | undefined {
    return this.byNodeId.get(nodeid);
  }

  byKey(identity: string): Inode | undefined {
    return this.byIdentity.get(identity);
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

  /** Add under its node id only: another node already owns this identity (a restored alias). */
  addUnindexed(inode: Inode): void {
    this.byNodeId.set(inode.nodeid, inode);
  }

  add(inode: Inode): void {
    this.byNodeId.set(inode.nodeid, inode);
    this.byIdentity.set(inode.identity, inode);
  }

  /** Point `inode`'s parent link at (parent, name), keeping the parents' child counts right. */
  setParent(inode: Inode, parent: Inode | null, name: Buffer | null): void {
    if (inode.parent === parent) {
      inode.name = name;
      return;
    }
    const old = inode.parent;
    if (parent) parent.children++;
    inode.parent = parent;
    inode.name = name;
    if (old) {
      old.children--;
      this.maybeDrop(old);
    }
  }

  /** Drop `n` lookups; a count going below zero is a client bug: saturate and log, never abort. */
  forget(inode: Inode, n: number): void {
    if (n > inode.nlookup) {
      this.log.warn({ nodeid: String(inode.nodeid), nlookup: inode.nlookup, forget: n }, 'forget below zero lookups; saturating');
      inode.nlookup = 0;
    } else {
      inode.nlookup -= n;
    }
    this.maybeDrop(inode);
  }

  /** The identity was reused or removed: stop finding this inode by it (its nodeid stays valid). */
  unindex(inode: Inode): void {
    if (this.byIdentity.get(inode.identity) === inode) this.byIdentity.delete(inode.identity);
  }

  maybeDrop(start: Inode): void {
    let inode: Inode | null = start;
    // iterative: dropping a child may drop its parent, and so on up the chain
    while (inode && inode.nlookup === 0 && inode.children === 0 && inode.opens === 0 && inode.nodeid !== this.rootId) {
      if (this.byNodeId.get(inode.nodeid) !== inode) return;
      this.byNodeId.delete(inode.nodeid);
      this.unindex(inode);
      if (inode.links > 1) this.multiLinked--;
      this.onDrop?.(inode);
      const parent: Inode | null = inode.parent;
      inode.parent = null;
      if (parent) parent.children--;
      inode = parent;
    }
  }

  *all(): IterableIterator<Inode> {
    yield* this.byNodeId.values();
  }
}
