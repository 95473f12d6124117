/**
 * Open files and their data: open, create, O_TMPFILE, read, write, flush, fsync, fallocate,
 * lseek, copy_file_range and release. Special files are never opened for I/O by the server.
 */
import { E, FsError } from '../errors.js';
import {
  sys, statAt, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, O_CLOEXEC, F_UNLCK, O_ACCMODE, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, O_TMPFILE, O_TRUNC,
  SEEK_DATA, SEEK_HOLE, SEEK_SET, S_IFDIR, S_IFREG,
} from '../sys/syscalls.js';
import type { MappedSeg, Stat } from '../sys/syscalls.js';
import { createMode } from './acl.js';
import { killSuidgid } from './attrs.js';
import { fileOpenFlags } from './cache-policy.js';
import { checkName } from './names.js';
import type { Confinement } from './confinement.js';
import { NowaitIo } from './data-io.js';
import type { Entries } from './entries.js';
import type { OpenFiles } from './open-files.js';
import { DOT, EMPTY, closeQuietly, entryOf, openAt, openProc, type Services } from './services.js';
import { WRITE_KILL_SUIDGID, type Context, type CreateOut, type FileOffset, type OpenOut } from './types.js';
import { labelNewNode, setLabel } from './xattrs.js';

export class Files {
  private readonly io: NowaitIo;

  constructor(
    private readonly s: Services,
    private readonly conf: Confinement,
    private readonly entries: Entries,
    private readonly open: OpenFiles,
  ) {
    this.io = new NowaitIo(s.counters);
  }

  async openFile(nodeid: bigint, flags: number, killSuidgidOnTrunc: boolean): Promise<OpenOut> {
    const s = this.s;
    const inode = s.records.inode(nodeid);
    if (inode.type === S_IFDIR) throw new FsError(E.EISDIR);
    // special files are never opened for I/O by the server
    if (inode.type !== S_IFREG) throw new FsError(E.EACCES);
    const f = this.open.hostFlags(flags);
    const fd = s.fds.with(inode, (ifd) => {
      this.conf.confirmInside(inode, ifd);
      s.cache.reserve();
      const nfd = openProc(s, ifd, f);
      // the server (root) keeps setuid bits on truncation; the client's caller may not
      try {
        if (killSuidgidOnTrunc && s.negotiated.killPrivV2 && f & O_TRUNC) killSuidgid(ifd);
      } catch (e) {
        closeQuietly(nfd);
        throw e;
      }
      return nfd;
    });
    return this.open.add(inode, 'file', f & ~O_TRUNC, fd, inode.unlinked, this.open.fileReply);
  }

  async create(ctx: Context, parentId: bigint, name: Buffer, mode: number, flags: number, umask: number): Promise<CreateOut> {
    const s = this.s;
    checkName(name);
    const parent = s.records.inode(parentId);
    const f = this.open.hostFlags(flags) | O_CREAT | (flags & O_EXCL) | O_NOFOLLOW;
    return this.conf.withDir(parent, (dfd) => {
      s.cache.reserve();
      // O_NOFOLLOW: a symlink planted at `name` is never followed (ELOOP)
      // O_EXCL first: only a file this call made goes to the requester; an existing one (made on
      // the host since the client's lookup) is opened and keeps its owner
      let created = true;
      let fd: number;
      try {
        fd = openAt(s, dfd, name, f | O_EXCL, createMode(s, dfd, mode, umask) & 0o7777);
      } catch (e) {
        if (f & O_EXCL || (e as FsError).errno !== E.EEXIST) throw e;
        created = false;
        fd = openAt(s, dfd, name, f & ~O_CREAT, 0);
      }
      let r;
      try {
        if (created) this.entries.chownToRequester(ctx, fd, dfd);
        if (created) labelNewNode(s, ctx, fd, dfd, name, 0);
        s.cache.reserve();
        const path = this.pathFdOf(dfd, name, fd);
        r = this.entries.adopt(parent, Buffer.from(name), path.fd, true, path.st);
      } catch (e) {
        closeQuietly(fd);
        throw e;
      }
      const open = this.open.add(r.inode, 'file', f & ~(O_TRUNC | O_CREAT | O_EXCL | O_NOFOLLOW), fd, false, this.open.fileReply);
      return { entry: entryOf(s, r.inode, r.st), open };
    });
  }

  /**
   * An O_PATH fd of the file `fd` just opened at `name`, with its attributes: by name (a third of
   * the cost of a reopen through /proc), kept only if it is the same inode, (dev, ino) compared
   * while `fd` holds the file, so that its number cannot have gone to another file meanwhile.
   * Another file at the name by now: through /proc.
   */
  private pathFdOf(dirFd: number, name: Buffer, fd: number): { fd: number; st?: Stat } {
    const s = this.s;
    const p = sys.openatTry(dirFd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    if (p >= 0) {
      try {
        const st = statAt(p, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        const held = statAt(fd, EMPTY, AT_EMPTY_PATH);
        if (st.ino === held.ino && st.devMajor === held.devMajor && st.devMinor === held.devMinor) return { fd: p, st };
      } catch {
        /* through /proc below */
      }
      closeQuietly(p);
    }
    return { fd: openProc(s, fd, O_PATH) };
  }

  async tmpfile(ctx: Context, parentId: bigint, mode: number, flags: number, umask: number): Promise<CreateOut> {
    const s = this.s;
    const parent = s.records.inode(parentId);
    let f = this.open.hostFlags(flags) & ~O_TRUNC;
    if ((f & O_ACCMODE) === O_RDONLY) f = (f & ~O_ACCMODE) | O_RDWR;
    return this.conf.withDir(parent, (dfd) => {
      s.cache.reserve();
      const fd = openAt(s, dfd, DOT, (f | O_TMPFILE) & ~O_DIRECTORY | O_TMPFILE, createMode(s, dfd, mode, umask) & 0o7777);
      let r;
      try {
        this.entries.chownToRequester(ctx, fd, dfd);
        setLabel(s, ctx, fd);
        s.cache.reserve();
        // no name, no parent link: it cannot be reopened, so its fds are pinned
        r = this.entries.adopt(null, null, openProc(s, fd, O_PATH), false);
      } catch (e) {
        closeQuietly(fd);
        throw e;
      }
      const inode = r.inode;
      inode.unlinked = true;
      inode.reopenable = false;
      s.cache.setPermanent(inode.fdKey, true);
      const open = this.open.add(inode, 'file', f, fd, true, (h) => ({ fh: h.fh, openFlags: fileOpenFlags(s.opts.cache) }));
      return { entry: entryOf(s, inode, r.st), open };
    });
  }

  async read(nodeid: bigint, fh: bigint, offset: number, size: number, into?: Buffer): Promise<Buffer> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
    const buf = into && into.length >= size ? into : Buffer.allocUnsafe(size);
    const n = await this.open.withAsync(h, (fd) => this.io.read(fd, buf, size, offset, h.inode.dev));
    return n === size ? buf : buf.subarray(0, n);
  }

  async write(nodeid: bigint, fh: bigint, offset: number, data: Buffer, writeFlags: number): Promise<number> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
    // O_APPEND (kept across reopen): write(2) appends wherever the host's end is
    const pos = h.flags & O_APPEND ? -1 : offset;
    return this.open.withAsync(h, async (fd) => {
      const n = await this.io.write(fd, data, pos, h.inode.dev);
      if (this.s.negotiated.killPrivV2 && writeFlags & WRITE_KILL_SUIDGID) killSuidgid(fd);
      return n;
    });
  }

  /** read() into mapped memory: the kernel copies from the file to `into` (a guest's pages). */
  async readMapped(nodeid: bigint, fh: bigint, offset: number, size: number, into: MappedSeg[]): Promise<number> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
    if (into.reduce((n, seg) => n + seg[2], 0) < size) throw new FsError(E.EINVAL, 'read: the destination is smaller than the size');
    return this.open.withAsync(h, (fd) => sys.preadvMappedAsync(fd, into, offset));
  }

  /** write() from mapped memory, as write() does otherwise (O_APPEND, killpriv). */
  async writeMapped(nodeid: bigint, fh: bigint, offset: number, from: MappedSeg[], writeFlags: number): Promise<number> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
    const pos = h.flags & O_APPEND ? -1 : offset;
    return this.open.withAsync(h, async (fd) => {
      const n = await sys.pwritevMappedAsync(fd, from, pos);
      if (this.s.negotiated.killPrivV2 && writeFlags & WRITE_KILL_SUIDGID) killSuidgid(fd);
      return n;
    });
  }

  async flush(nodeid: bigint, fh: bigint, lockOwner: bigint): Promise<void> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    // close(2) drops the POSIX locks of the closing process (the FLUSH's lock owner). Our locks are
    // OFD locks on this fh: drop them only when that owner took some, so that a forked child
    // closing its inherited copy, or an OFD lock's dup being closed, leaves them alone.
    if (h.lockOwners?.delete(lockOwner)) {
      this.open.with(h, (fd) => {
        try {
          sys.ofdSetlk(fd, F_UNLCK, SEEK_SET, 0, 0);
        } catch {
          /* nothing held */
        }
      });
    }
  }

  async fsync(nodeid: bigint, fh: bigint, datasync: boolean, kind: 'file' | 'dir' = 'file'): Promise<void> {
    const h = this.s.handles.get(fh, nodeid, kind);
    await this.open.withAsync(h, (fd) => sys.fsyncAsync(fd, datasync));
  }

  async fallocate(nodeid: bigint, fh: bigint, mode: number, offset: FileOffset, length: FileOffset): Promise<void> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    await this.open.withAsync(h, (fd) => sys.fallocateAsync(fd, mode, offset, length));
  }

  async release(nodeid: bigint, fh: bigint, kind: 'file' | 'dir' = 'file'): Promise<void> {
    this.open.close(this.s.handles.get(fh, nodeid, kind));
  }

  async lseek(nodeid: bigint, fh: bigint, offset: bigint, whence: number): Promise<bigint> {
    const h = this.s.handles.get(fh, nodeid, 'file');
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FsError(E.EINVAL);
    return this.open.with(h, (fd) => sys.lseek(fd, offset, whence));
  }

  async copyFileRange(nodeIn: bigint, fhIn: bigint, offIn: FileOffset, nodeOut: bigint, fhOut: bigint, offOut: FileOffset, len: number, flags: number): Promise<number> {
    const hi = this.s.handles.get(fhIn, nodeIn, 'file');
    const ho = this.s.handles.get(fhOut, nodeOut, 'file');
    return this.open.withAsync(hi, (fdi) => this.open.withAsync(ho, (fdo) => sys.copyFileRangeAsync(fdi, offIn, fdo, offOut, len, flags)));
  }
}

