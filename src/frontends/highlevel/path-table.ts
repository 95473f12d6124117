/**
 * The bounded path table of the fuse-native frontend: libfuse2's high-level API names every file
 * by a path ("/a/b/c", UTF-8 as fuse-native hands it over); the FileSystem knows node ids. The
 * table resolves a path component by component through `fs.lookup` and remembers each result.
 *
 * Lookup-count rule (src/fs/filesystem.ts): every Entry the adapter receives (lookup, mkdir,
 * create, ...) is owned by exactly one table entry, and is given back with `fs.forget(nodeid, 1)`
 * exactly once, when that entry leaves the table: LRU eviction beyond `max`, unlink/rmdir (with
 * any cached descendants), being replaced by a rename or a racing lookup, or `clear()` at unmount.
 *
 * The table is a trie of path components, not a map of path strings, so that renaming a directory
 * moves its whole cached subtree by relinking one node: every descendant's key (its path) changes
 * with it, in O(1). The LRU bound counts entries; an evicted directory whose descendants are still
 * cached stays as an empty trie node (no lookup held) until its last descendant goes.
 *
 * An entry in use by an operation is pinned: eviction skips it, and removal defers its forget to
 * the last unpin, so a node id is never forgotten while a call that uses it is in flight.
 */
import { isUtf8 } from 'node:buffer';
import type { Logger } from 'pino';
import { E, FsError } from '../../errors.js';
import { ROOT_ID, type FileSystem } from '../../fs/filesystem.js';
import type { Context, Entry } from '../../fs/types.js';

/** What one cached path resolves to. `parent` is the directory's node id, `name` the raw component. */
export interface PathEntry {
  nodeid: bigint;
  generation: bigint;
  parent: bigint;
  name: Buffer;
  /** S_IFMT bits of the looked-up attributes (for the adapter's readdir/fh decisions) */
  type: number;
  /** Date.now() after which the name is looked up again (the entry timeout of the core's cache policy) */
  validUntil: number;
}

/** A trie node: one path component. `entry` is null for the root and for evicted interior nodes. */
class TNode {
  readonly children = new Map<string, TNode>();
  entry: PathEntry | null = null;
  pins = 0;
  /** removed from the trie while pinned: forget at the last unpin */
  dead = false;
  constructor(public name: string, public parent: TNode | null) {}
}

/** A resolved path, pinned until `release()`. */
export interface Resolved {
  readonly nodeid: bigint;
  readonly entry: PathEntry | null;
  release(): void;
}

export interface PathTableOptions {
  /** most entries (lookups held) before LRU eviction; default 100_000 */
  max?: number;
  log?: Logger;
}

const REPLACEMENT = Buffer.from([0xef, 0xbf, 0xbd]);

/**
 * Split a fuse-native path into components. A component holding U+FFFD is refused (EILSEQ): it is
 * what V8 made of a non-UTF-8 name, and looking it up (or worse, creating it) would address a
 * different file than the one the caller named.
 */
export function splitPath(path: string): string[] {
  if (!path.startsWith('/')) throw new FsError(E.EINVAL, 'relative path');
  const parts = path.split('/').filter((p) => p.length > 0);
  for (const p of parts) {
    if (p.includes('\ufffd')) throw new FsError(E.EILSEQ, 'name not representable in UTF-8');
  }
  return parts;
}

/** Whether a raw name survives the trip to fuse-native and back (valid UTF-8, no U+FFFD). */
export function isRepresentable(name: Buffer): boolean {
  return isUtf8(name) && !name.includes(REPLACEMENT);
}

export class PathTable {
  private readonly root = new TNode('', null);
  /** LRU order of nodes holding an entry: first = least recently used */
  private readonly lru = new Set<TNode>();
  private readonly max: number;
  private readonly log: Logger | undefined;
  /** lookups received (resolve and add; each owed back) and forgets sent, for tests and counters */
  lookups = 0;
  forgets = 0;
  evictions = 0;

  constructor(private readonly fs: FileSystem, opts: PathTableOptions = {}) {
    this.max = Math.max(1, opts.max ?? 100_000);
    this.log = opts.log;
  }

  get size(): number {
    return this.lru.size;
  }

  /**
   * Resolve `path` to a node id, looking up what is not cached; the result is pinned until
   * `release()`. Each component's directory stays pinned while its child is looked up.
   */
  async resolve(ctx: Context, path: string): Promise<Resolved> {
    const parts = splitPath(path);
    let node = this.root;
    this.pin(node);
    try {
      for (const part of parts) {
        node = await this.step(ctx, node, part);
      }
    } catch (e) {
      this.unpin(node);
      throw e;
    }
    return this.resolved(node);
  }

  /**
   * Resolve the directory of `path` and hand back its last component: for create, mkdir, unlink,
   * rename... The parent is pinned until `release()`.
   */
  async resolveParent(ctx: Context, path: string): Promise<{ dir: Resolved; name: string; nameBuf: Buffer }> {
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) throw new FsError(E.EBUSY ?? E.EINVAL, 'the root has no parent');
    const dir = await this.resolve(ctx, '/' + parts.join('/'));
    return { dir, name, nameBuf: Buffer.from(name, 'utf8') };
  }

  /**
   * Record an Entry the filesystem returned for `name` in the pinned directory `dir` (mkdir,
   * create, mknod, symlink, link). The table takes over its lookup.
   */
  add(dir: Resolved, name: string, e: Entry): void {
    const dnode = (dir as ResolvedImpl).node;
    if (e.nodeid === 0n) return;
    this.lookups++;
    this.insert(dnode, name, e);
  }

  /** Drop the entry at `name` in `dir` and its cached subtree (after unlink/rmdir succeeded). */
  remove(dir: Resolved, name: string): void {
    const dnode = (dir as ResolvedImpl).node;
    const child = dnode.children.get(name);
    if (child) this.dropSubtree(child);
  }

  /**
   * After a successful rename: move the cached subtree at `from` to `to` (both pinned parent
   * directories), dropping whatever `to` replaced. The moved entry gets its new parent and name;
   * descendants keep theirs (same parent inode) and their paths change with the trie.
   */
  rename(fromDir: Resolved, fromName: string, toDir: Resolved, toName: string): void {
    const fnode = (fromDir as ResolvedImpl).node;
    const tnode = (toDir as ResolvedImpl).node;
    const moving = fnode.children.get(fromName);
    if (moving === undefined) {
      // nothing cached under the old name; whatever the new name meant is gone
      const replaced = tnode.children.get(toName);
      if (replaced) this.dropSubtree(replaced);
      return;
    }
    if (moving.parent === tnode && fromName === toName) return;
    const replaced = tnode.children.get(toName);
    if (replaced === moving) return;
    if (replaced) this.dropSubtree(replaced);
    fnode.children.delete(fromName);
    moving.name = toName;
    moving.parent = tnode;
    tnode.children.set(toName, moving);
    if (moving.entry) {
      moving.entry.parent = tnode === this.root ? ROOT_ID : tnode.entry?.nodeid ?? moving.entry.parent;
      moving.entry.name = Buffer.from(toName, 'utf8');
      // an interior node without an entry: its id is unknown, fix it at the next lookup
      if (tnode !== this.root && !tnode.entry) this.dropEntry(moving);
    }
    this.prune(fnode);
  }

  /** Forget every entry (unmount). */
  clear(): void {
    for (const n of [...this.lru]) this.dropEntry(n);
    this.root.children.clear();
  }

  /** The cached entry of `path` without looking anything up (tests, diagnostics). */
  peek(path: string): PathEntry | null {
    let node: TNode | undefined = this.root;
    for (const p of splitPath(path)) {
      node = node.children.get(p);
      if (!node) return null;
    }
    return node.entry;
  }

  /** Every cached path, for tests. */
  paths(): string[] {
    const out: string[] = [];
    for (const n of this.lru) out.push(this.pathOf(n));
    return out.sort();
  }

  pathOf(n: TNode): string {
    const parts: string[] = [];
    for (let c: TNode | null = n; c && c !== this.root; c = c.parent) parts.push(c.name);
    return '/' + parts.reverse().join('/');
  }

  // ------------------------------------------------------------------ internals

  private async step(ctx: Context, dir: TNode, part: string): Promise<TNode> {
    const dirId = dir === this.root ? ROOT_ID : dir.entry?.nodeid;
    if (dirId === undefined) throw new FsError(E.ESTALE, 'directory left the table');
    const cached = dir.children.get(part);
    // past its entry timeout a cached name is looked up again: the host may have replaced it
    if (cached?.entry && !cached.dead && cached.entry.validUntil > Date.now()) {
      this.pin(cached);
      this.touch(cached);
      this.unpin(dir);
      return cached;
    }
    let e: Entry;
    try {
      const found = await this.fs.lookup(ctx, dirId, Buffer.from(part, 'utf8'));
      if (found instanceof FsError) throw found;
      e = found;
    } catch (err) {
      this.unpin(dir);
      throw err;
    }
    if (e.nodeid === 0n) {
      // a negative entry: no lookup was counted
      this.unpin(dir);
      throw new FsError(E.ENOENT);
    }
    this.lookups++;
    if (dir.dead) {
      // the directory was removed while we looked: hand the lookup back
      this.forget(e.nodeid);
      this.unpin(dir);
      throw new FsError(E.ENOENT, 'directory removed');
    }
    const node = this.insert(dir, part, e, true);
    this.unpin(dir);
    return node;
  }

  /** Put `e` at dir/name; the table owns its lookup. Returns the node, pinned when `pin`. */
  private insert(dir: TNode, name: string, e: Entry, pin = false): TNode {
    let node = dir.children.get(name);
    if (!node) {
      node = new TNode(name, dir);
      dir.children.set(name, node);
    }
    if (pin) this.pin(node);
    const parentId = dir === this.root ? ROOT_ID : dir.entry?.nodeid ?? 0n;
    if (node.entry) {
      if (node.entry.nodeid === e.nodeid) {
        // a racing lookup of the same name: one lookup is enough
        this.forget(e.nodeid);
        node.entry.generation = e.generation;
        node.entry.validUntil = Date.now() + e.entryTimeoutMs;
        this.touch(node);
        return node;
      }
      // the name now means another inode (changed on the host): the old lookup goes back, and
      // whatever was cached below the old inode no longer belongs under this name
      this.forget(node.entry.nodeid);
      this.lru.delete(node);
      for (const c of [...node.children.values()]) this.dropSubtree(c);
    }
    node.entry = {
      nodeid: e.nodeid, generation: e.generation, parent: parentId, name: Buffer.from(name, 'utf8'),
      type: e.attr.mode & 0o170000, validUntil: Date.now() + e.entryTimeoutMs,
    };
    this.lru.add(node);
    this.evict();
    return node;
  }

  private touch(n: TNode): void {
    this.lru.delete(n);
    this.lru.add(n);
  }

  private evict(): void {
    if (this.lru.size <= this.max) return;
    for (const n of this.lru) {
      if (this.lru.size <= this.max) break;
      if (n.pins > 0) continue;
      this.evictions++;
      this.dropEntry(n);
      this.prune(n);
    }
  }

  /** Give back the node's lookup (now, or at its last unpin) and leave the LRU. */
  private dropEntry(n: TNode): void {
    if (!n.entry) return;
    this.lru.delete(n);
    if (n.pins > 0) {
      n.dead = true;
      return;
    }
    this.forget(n.entry.nodeid);
    n.entry = null;
  }

  private dropSubtree(n: TNode): void {
    const stack = [n];
    while (stack.length) {
      const c = stack.pop()!;
      for (const k of c.children.values()) stack.push(k);
      if (c.entry) this.dropEntry(c);
      if (c.pins > 0) c.dead = true;
      c.children.clear();
    }
    const parent = n.parent;
    if (parent && parent.children.get(n.name) === n) parent.children.delete(n.name);
    if (parent) this.prune(parent);
  }

  /** Remove empty interior nodes (no entry, no children, not pinned) up the chain. */
  private prune(n: TNode): void {
    let c: TNode | null = n;
    while (c && c !== this.root && !c.entry && c.children.size === 0 && c.pins === 0) {
      const p: TNode | null = c.parent;
      if (p && p.children.get(c.name) === c) p.children.delete(c.name);
      c = p;
    }
  }

  private pin(n: TNode): void {
    n.pins++;
  }

  private unpin(n: TNode): void {
    if (n.pins > 0) n.pins--;
    if (n.pins > 0) return;
    if (n.dead) {
      if (n.entry) {
        this.forget(n.entry.nodeid);
        n.entry = null;
      }
      return;
    }
    if (!n.entry) this.prune(n);
    else this.evict();
  }

  private forget(nodeid: bigint): void {
    if (nodeid === ROOT_ID) return;
    this.forgets++;
    try {
      this.fs.forget({ uid: 0, gid: 0, pid: 0, unique: 0n }, nodeid, 1n);
    } catch (e) {
      // forget must not throw (the contract); a bug below is logged, never propagated
      this.log?.error({ err: e, nodeid: String(nodeid) }, 'forget threw');
    }
  }

  private resolved(node: TNode): Resolved {
    return new ResolvedImpl(this, node);
  }

  /** @internal */
  releaseNode(node: TNode): void {
    this.unpin(node);
  }
}

class ResolvedImpl implements Resolved {
  private released = false;
  readonly nodeid: bigint;
  readonly entry: PathEntry | null;
  constructor(private readonly table: PathTable, readonly node: TNode) {
    // captured now: the node stays pinned (so its lookup held) until release()
    this.entry = node.entry;
    this.nodeid = node.entry?.nodeid ?? ROOT_ID;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.table.releaseNode(this.node);
  }
}
