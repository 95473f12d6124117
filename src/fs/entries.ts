/**
 * Names: lookup and forget, what creates a name (mknod, mkdir, symlink, link) and what removes or
 * moves one (unlink, rmdir, rename). Every name is one checked component, used with an *at()
 * syscall relative to a directory fd proven to be beneath the root.
 */
import { E, failure, FsError } from '../errors.js';
import { sameHandle, type FileHandle } from '../handle/file-handle.js';
import {
  sys, statAt, procFdDir, procFdPath, parseDirents, DT_DIR, O_DIRECTORY, O_RDONLY, PATH_MAX,
  AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW,
  O_CLOEXEC, O_NOFOLLOW, O_PATH, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID,
  type Stat,
} from '../sys/syscalls.js';
import { createMode } from './acl.js';
import { checkName, isDotName } from './names.js';
import type { Confinement } from './confinement.js';
import { dropAltLink, identityOf, rememberAltLink, type Inode } from './inode-store.js';
import { DOT, EMPTY, closeQuietly, devOf, entryOf, handleOf, openAt, type Services } from './services.js';
import type { Context, DeviceNumber, Entry } from './types.js';
import { labelNewNode } from './xattrs.js';

/** An inode just reached through an fd, with the attributes read from that fd. */
export interface Reached {
  inode: Inode;
  st: Stat;
}

/** directory entries read at most when looking for another name of a file whose name went */
const MAX_LINK_SEARCH = 10_000;

/**
 * A removal's victim matters to the books: while files are open (it may live on unlinked) or a
 * file is known with other names (a reopen must walk another one). While not, a removal is only the
 * host's unlinkat, and the other serving threads do it themselves (SharedRemovalGate, setup.ts).
 */
export function victimMatters(handles: { readonly size: number }, store: { readonly multiLinked: number }): boolean {
  return handles.size > 0 || store.multiLinked > 0;
}

export class Entries {
  constructor(private readonly s: Services, private readonly conf: Confinement) {}

  /** A missing name resolves to failure(ENOENT) when the fast path finds it missing (Entries.lookupKnown). */
  async lookup(_ctx: Context, parentId: bigint, name: Buffer): Promise<Entry | FsError> {
    const s = this.s;
    checkName(name, true);
    const parent = s.records.inode(parentId);
    // LOOKUP of "." names the node itself, of any type: the kernel's export code resolves a client
    // file handle that way (fuse_get_dentry)
    const isSelf = name.length === 1 && name[0] === 0x2e;
    if (!isSelf && parent.type !== S_IFDIR) throw new FsError(E.ENOTDIR);
    if (isDotName(name)) {
      let target = parent;
      if (name.length === 2) {
        // '..' of the root is the root; otherwise the parent link (never a walk above the root)
        if (!parent.is(s.root) && !parent.parent) {
          // a directory reached without a parent link (tmp/export): prove nothing, refuse
          throw new FsError(E.ESTALE, 'parent unknown');
        }
        target = parent.is(s.root) ? s.root : parent.parent!;
      }
      // "." resolves a client's handle: what it names must still be inside, like any name
      const st = s.fds.with(target, (fd) => {
        this.conf.confirmInside(target, fd);
        return statAt(fd, EMPTY, AT_EMPTY_PATH);
      });
      target.addLookup();
      return entryOf(s, target, st);
    }
    const r = this.conf.withDir(parent, (dfd) => this.lookupKnown(parent, dfd, name) ?? this.lookupAt(parent, dfd, name));
    return r instanceof FsError ? r : entryOf(s, r.inode, r.st);
  }

  forget(nodeid: bigint, nlookup: bigint): void {
    const s = this.s;
    const inode = s.store.get(nodeid);
    if (!inode) {
      const rec = s.exports.get(nodeid);
      // keep the record (a persistent client handle may still name it), drop the count
      if (rec) rec.nlookup = Math.max(0, rec.nlookup - Number(nlookup > 0xffffffffn ? 0xffffffffn : nlookup));
      else {
        s.counters.forgetUnknown++;
        s.log.debug({ nodeid: String(nodeid) }, 'forget of an unknown node id');
      }
      return;
    }
    // the root lives as long as the session; the kernel's count on it is not ours to drop
    if (inode.is(s.root)) return;
    const rough = inode.countApproximate;
    const have = inode.nlookup;
    const n = nlookup > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(nlookup);
    if (s.store.forget(inode, n)) return;
    // below zero: saturated at 0. Expected for a count restored after a crash (lookups made since
    // its record was streamed were not); anything else means a count went wrong
    const what = { nodeid: String(nodeid), nlookup: have, forget: n };
    if (rough) {
      s.counters.forgetAfterCrash++;
      s.log.debug(what, 'forget below a lookup count restored after a crash; saturating');
    } else {
      s.counters.forgetUnderflow++;
      s.log.warn(what, 'forget below zero lookups; saturating');
    }
  }

  async mknod(ctx: Context, parentId: bigint, name: Buffer, mode: number, rdev: DeviceNumber, umask: number): Promise<Entry> {
    const type = mode & S_IFMT || S_IFREG;
    return this.makeNode(ctx, parentId, name, type, (dfd) => sys.mknodat(dfd, name, createMode(this.s, dfd, mode, umask), sys.makedev(rdev.major, rdev.minor)));
  }

  async mkdir(ctx: Context, parentId: bigint, name: Buffer, mode: number, umask: number): Promise<Entry> {
    return this.makeNode(ctx, parentId, name, S_IFDIR, (dfd) => sys.mkdirat(dfd, name, createMode(this.s, dfd, mode, umask) & 0o7777));
  }

  async symlink(ctx: Context, target: Buffer, parentId: bigint, name: Buffer): Promise<Entry> {
    if (target.length === 0 || target.indexOf(0) >= 0) throw new FsError(E.EINVAL);
    if (target.length >= PATH_MAX) throw new FsError(E.ENAMETOOLONG);
    // the target is stored, never followed by the server
    return this.makeNode(ctx, parentId, name, S_IFLNK, (dfd) => sys.symlinkat(target, dfd, name));
  }

  async unlink(parentId: bigint, name: Buffer): Promise<void> {
    this.removeName(parentId, name, 0);
  }

  async rmdir(parentId: bigint, name: Buffer): Promise<void> {
    this.removeName(parentId, name, AT_REMOVEDIR);
  }

  async rename(olddirId: bigint, oldname: Buffer, newdirId: bigint, newname: Buffer, flags: number): Promise<void> {
    const s = this.s;
    checkName(oldname);
    checkName(newname);
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) throw new FsError(E.EINVAL);
    const olddir = s.records.inode(olddirId);
    const newdir = s.records.inode(newdirId);
    this.conf.withDir(olddir, (ofd) => this.conf.withDir(newdir, (nfd) => {
      const moved = this.knownByName(ofd, oldname);
      const other = this.knownByName(nfd, newname);
      sys.renameat2(ofd, oldname, nfd, newname, flags);
      if (moved) this.nameMoved(moved, olddir, oldname, newdir, newname);
      if (other && flags & RENAME_EXCHANGE) this.nameMoved(other, newdir, newname, olddir, oldname);
      else if (other && !other.is(moved)) {
        if (s.handles.size > 0) this.noteMaybeUnlinked(other);
        this.nameGone(other, newdir, nfd, newname);
      }
    }));
  }

  async link(nodeid: bigint, newparentId: bigint, newname: Buffer): Promise<Entry> {
    const s = this.s;
    checkName(newname);
    const inode = s.records.inode(nodeid);
    if (inode.type === S_IFDIR) throw new FsError(E.EPERM);
    const newparent = s.records.inode(newparentId);
    const r = this.conf.withDir(newparent, (dfd) => {
      s.fds.with(inode, (fd) => {
        if (s.canLinkEmptyPath) sys.linkat(fd, EMPTY, dfd, newname, AT_EMPTY_PATH);
        // without CAP_DAC_READ_SEARCH: through the fd's /proc magic link
        else sys.linkat(procFdDir(), procFdPath(fd), dfd, newname, AT_SYMLINK_FOLLOW);
      });
      return this.madeAs(this.lookupAt(newparent, dfd, newname), inode.type);
    });
    return entryOf(s, r.inode, r.st);
  }

  /** Look `name` up in directory `parent` whose fd (O_PATH or real) is `dirFd`; counts one lookup. */
  lookupAt(parent: Inode, dirFd: number, name: Buffer): Reached {
    this.s.cache.reserve();
    const fd = openAt(this.s, dirFd, name, O_PATH | O_NOFOLLOW, 0);
    return this.adopt(parent, name, fd);
  }

  /**
   * Take an O_PATH fd of a just-reached child (ownership passes here): the existing inode when the
   * handle is known (hard link, re-lookup), a new one otherwise. Counts one lookup. Without a
   * parent and name (O_TMPFILE), or with `reopenable` false, the inode's fd is pinned for life.
   * `fdStat`: the fd's attributes, when the caller just read them.
   */
  adopt(parent: Inode | null, name: Buffer | null, fd: number, reopenable = true, fdStat?: Stat): Reached {
    const s = this.s;
    let st: Stat;
    let h: FileHandle | null;
    try {
      st = fdStat ?? statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      h = handleOf(s, fd);
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
    let inode = h ? s.store.byHandle(h) : s.store.byDevIno(devOf(st), st.ino);
    if (inode && inode.type !== (st.mode & S_IFMT)) {
      // the same identity with another type: an old (dev, ino) reused by the host
      s.store.unindex(inode);
      inode = undefined;
    }
    if (inode) {
      if (inode.is(s.root) || s.cache.has(inode.fdKey)) closeQuietly(fd);
      else {
        s.cache.insertPinned(inode.fdKey, fd, 'path', !inode.reopenable);
        s.cache.unpin(inode.fdKey, fd);
      }
      if (parent && name) this.learnName(inode, parent, name);
    } else {
      // another mount below the share, or no handle support: the fd cannot be reopened, pin it
      const canReopen = reopenable && h !== null && h.mountId === s.root.mountId;
      // a file that left memory (or a predecessor's) keeps its node id: a client's handle of it and
      // this name reach one inode, not two
      const rec = canReopen && s.exports.size > 0 ? s.exports.byKey(identityOf(h, st)) : undefined;
      const known = rec && rec.type === (st.mode & S_IFMT) ? rec : undefined;
      // the handle comes from name_to_handle_at: sealed only when its record leaves memory (sealOf)
      inode = s.store.create({
        nodeid: known ? known.nodeid : s.store.allocId(), generation: known ? known.generation : s.generation,
        type: st.mode & S_IFMT, handle: h, seal: null, reopenable: canReopen, dev: devOf(st), ino: st.ino,
      });
      if (known) {
        inode.nlookup = known.nlookup;
        if (known.approximate) inode.countApproximate = true;
        s.exports.delete(known.nodeid);
      }
      if (parent && name) s.store.setParent(inode, parent, name);
      s.records.emit(inode);
      s.cache.insertPinned(inode.fdKey, fd, 'path', !canReopen);
      s.cache.unpin(inode.fdKey, fd);
      if (!canReopen) s.once.warn(`pin-${h ? 'mnt' : 'nohandle'}`, { name: name?.toString() },
        h ? 'a submount below the shared directory: its inodes keep their fds open (cannot be reopened)'
          : 'filesystem without file handles below the shared directory: its inodes keep their fds open');
    }
    inode.ino = st.ino;
    inode.dev = devOf(st);
    if (inode.type !== S_IFDIR) s.store.setLinks(inode, st.nlink);
    inode.addLookup();
    if (parent && name) this.conf.inheritProof(inode, parent);
    return { inode, st };
  }

  /**
   * LOOKUP of a name whose inode the server already knows, without opening anything:
   * name_to_handle_at and statx by name in the proven directory. The handle names the inode; the
   * statx must then describe that same inode (the ino and device recorded when it was last reached
   * through an fd), or the name changed between the two calls and the slow path decides. Unknown
   * inodes, submounts and filesystems without handles take the slow path (null); a name that is
   * not there is failure(ENOENT) at once, returned, not thrown.
   */
  lookupKnown(parent: Inode, dirFd: number, name: Buffer): Reached | FsError | null {
    const s = this.s;
    const h = sys.nameToHandleAtTry(dirFd, name, s.handleFlags);
    if (typeof h === 'number') {
      if (h === -E.ENOENT) return failure(E.ENOENT);
      return null;
    }
    const inode = s.store.byHandle(h);
    if (!inode || inode.is(s.root) || inode.ino < 0n) return null;
    let st: Stat;
    try {
      st = statAt(dirFd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT);
    } catch {
      return null;
    }
    if (st.ino !== inode.ino || devOf(st) !== inode.dev || (st.mode & S_IFMT) !== inode.type) return null;
    if (inode.type !== S_IFDIR) s.store.setLinks(inode, st.nlink);
    this.learnName(inode, parent, name);
    inode.addLookup();
    this.conf.inheritProof(inode, parent);
    return { inode, st };
  }

  /** The known inode a name refers to now, if any (no lookup counted). */
  private knownByName(dirFd: number, name: Buffer): Inode | undefined {
    const h = sys.nameToHandleAtTry(dirFd, name, this.s.handleFlags);
    if (typeof h !== 'number') return this.s.store.byHandle(h);
    // no handles on this filesystem: by (dev, ino)
    if (h === -E.EOPNOTSUPP || h === -E.EOVERFLOW) {
      try {
        const st = statAt(dirFd, name, AT_SYMLINK_NOFOLLOW);
        return this.s.store.byDevIno(devOf(st), st.ino);
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  /** After an unlink/rename-over: an inode whose last name went while files are open keeps its fds. */
  private noteMaybeUnlinked(inode: Inode | undefined): void {
    const s = this.s;
    if (!inode || inode.is(s.root)) return;
    const fd = s.cache.pin(inode.fdKey);
    if (fd === undefined) return;
    try {
      const st = statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      if (st.nlink === 0 || (inode.type === S_IFDIR && st.nlink <= 1)) {
        inode.unlinked = true;
        inode.reopenable = false;
        s.store.unindex(inode);
        s.cache.setPermanent(inode.fdKey, true);
        for (const h of s.handles.forInode(inode)) s.cache.setPermanent(h.fdKey, true);
      }
    } catch {
      /* gone already */
    } finally {
      s.cache.unpin(inode.fdKey, fd);
    }
  }

  /** Files the server (root) creates for another user belong to the requester, as virtiofsd does. */
  chownToRequester(ctx: Context, fd: number, parentFd: number): void {
    if (!this.needsChown(ctx)) return;
    // a setgid parent hands its group down; the kernel already did that
    const pst = statAt(parentFd, EMPTY, AT_EMPTY_PATH);
    const gid = pst.mode & S_ISGID ? -1 : ctx.gid;
    sys.fchownat(fd, EMPTY, ctx.uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  }

  private needsChown(ctx: Context): boolean {
    return this.s.opts.creds && this.s.isRoot && (ctx.uid !== 0 || ctx.gid !== 0);
  }

  private makeNode(ctx: Context, parentId: bigint, name: Buffer, type: number, make: (dfd: number) => void): Entry {
    const s = this.s;
    checkName(name);
    const parent = s.records.inode(parentId);
    return this.conf.withDir(parent, (dfd) => {
      make(dfd);
      const r = this.madeAs(this.lookupAt(parent, dfd, name), type);
      if (this.needsChown(ctx)) {
        s.fds.with(r.inode, (fd) => {
          this.chownToRequester(ctx, fd, dfd);
          r.st = statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        });
      }
      if (ctx.secctx) {
        try {
          s.fds.with(r.inode, (fd) => labelNewNode(s, ctx, fd, dfd, name, r.inode.type === S_IFDIR ? AT_REMOVEDIR : 0));
        } catch (e) {
          this.forget(r.inode.nodeid, 1n);
          throw e;
        }
      }
      return entryOf(s, r.inode, r.st);
    });
  }

  /**
   * What a name reached right after this server made it (mkdir, mknod, symlink, link), which must
   * be of the type it made: another process on the host may have replaced the name in between
   * (its own file renamed over it, or an unlink and a create), and the kernel refuses an entry of
   * another type than the one it asked for with EIO (fuse's create_new_entry). The lookup just
   * counted is dropped and the answer is EEXIST, as if the other process had made its name first:
   * what the client then looks up is that process's inode. (ENOENT from the lookup, the name
   * removed in between, stays ENOENT.)
   */
  private madeAs(r: Reached, type: number): Reached {
    if (r.inode.type === type) return r;
    this.forget(r.inode.nodeid, 1n);
    throw new FsError(E.EEXIST, 'the name was replaced on the host before it could be looked up');
  }

  private removeName(parentId: bigint, name: Buffer, flags: number): void {
    const s = this.s;
    checkName(name);
    const parent = s.records.inode(parentId);
    this.conf.withDir(parent, (dfd) => {
      const victim = victimMatters(s.handles, s.store) ? this.knownByName(dfd, name) : undefined;
      sys.unlinkat(dfd, name, flags);
      if (!victim) return;
      if (s.handles.size > 0) this.noteMaybeUnlinked(victim);
      this.nameGone(victim, parent, dfd, name);
    });
  }

  /**
   * `name` in `parent` reached `inode`: it becomes the parent link (the name a reopen walks), and
   * the previous one, for a non-directory, is remembered as another name (a hard link).
   */
  private learnName(inode: Inode, parent: Inode, name: Buffer): void {
    const s = this.s;
    if (inode.is(s.root) || inode.is(parent) || !inode.reopenable) return;
    if (inode.linkedAs(parent, name)) return;
    const was = inode.parent;
    if (inode.type !== S_IFDIR && was) rememberAltLink(inode, was.nodeid, inode.name!);
    dropAltLink(inode, parent.nodeid, name);
    // the table copies the name (names are views into the request buffer: filesystem.ts)
    s.store.setParent(inode, parent, name);
    s.records.emit(inode);
  }

  /** A rename moved one name of `inode` from (fromDir, fromName) to (toDir, toName). */
  private nameMoved(inode: Inode, fromDir: Inode, fromName: Buffer, toDir: Inode, toName: Buffer): void {
    if (!inode.reopenable || inode.is(this.s.root)) return;
    dropAltLink(inode, fromDir.nodeid, fromName);
    if (inode.linkedAs(fromDir, fromName)) {
      this.s.store.setParent(inode, toDir, toName);
      this.s.records.emit(inode);
    } else this.learnName(inode, toDir, toName);
  }

  /**
   * The name (parent, name) of `inode` is gone (unlink, or renamed over). When it was the parent
   * link, another name takes its place, so that the inode (and a client's persistent handle of it)
   * can still be reopened: a known other name, else (the file had more than one link when last
   * seen) a bounded search of the same directory for a name with the same file handle.
   */
  private nameGone(inode: Inode, parent: Inode, dirFd: number, name: Buffer): void {
    const s = this.s;
    if (inode.is(s.root) || inode.type === S_IFDIR || !inode.reopenable) return;
    const linksBefore = inode.links;
    if (linksBefore > 0) s.store.setLinks(inode, linksBefore - 1);
    dropAltLink(inode, parent.nodeid, name);
    if (!inode.linkedAs(parent, name)) return;
    while (inode.altLinks) {
      const alt = inode.altLinks[0]!;
      dropAltLink(inode, alt.parent, alt.name);
      let dir: Inode;
      try {
        dir = s.records.inode(alt.parent);
      } catch {
        continue; // that directory is gone too
      }
      s.store.setParent(inode, dir, alt.name);
      s.records.emit(inode);
      return;
    }
    if (linksBefore <= 1) return;
    const other = this.findLinkIn(dirFd, inode);
    if (other) {
      s.store.setParent(inode, parent, other);
      s.records.emit(inode);
    }
  }

  /** A name in the directory (O_PATH fd `dirFd`) with the file handle of `inode`, reading at most MAX_LINK_SEARCH entries. */
  private findLinkIn(dirFd: number, inode: Inode): Buffer | null {
    const s = this.s;
    const h = inode.handle;
    if (!h) return null;
    s.cache.reserve();
    const fd = openAt(s, dirFd, DOT, O_RDONLY | O_DIRECTORY, 0);
    try {
      const buf = Buffer.allocUnsafe(32 * 1024);
      let seen = 0;
      while (seen < MAX_LINK_SEARCH) {
        const n = sys.getdents64(fd, buf);
        if (n === 0) return null;
        for (const d of parseDirents(buf, n)) {
          if (++seen > MAX_LINK_SEARCH) return null;
          if (d.type === DT_DIR) continue;
          const o = sys.nameToHandleAtTry(dirFd, d.name, s.handleFlags);
          if (typeof o !== 'number' && sameHandle(o, h)) return d.name;
        }
      }
      return null;
    } finally {
      closeQuietly(fd);
    }
  }

}
