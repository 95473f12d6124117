/**
 * The fds of open files and directories (FUSE fh): borrowed from the fd cache, reopened after an
 * eviction (a file through /proc/self/fd of its inode's fd with its original flags, minus what
 * must not be replayed; a directory with openat(fd, ".")), registered as kernel backing files
 * under FUSE passthrough, and closed at release.
 */
import { E, FsError } from '../errors.js';
import {
  statAt, AT_EMPTY_PATH, O_ACCMODE, O_APPEND, O_CREAT, O_DIRECT, O_DIRECTORY, O_EXCL, O_NOATIME, O_NOCTTY, O_NOFOLLOW, O_RDONLY, O_RDWR, O_WRONLY,
  S_ISGID, S_ISUID,
} from '../sys/syscalls.js';
import { fileOpenFlags } from './cache-policy.js';
import type { OpenHandle } from './handle-table.js';
import type { Inode } from './inode-store.js';
import { DOT, EMPTY, openAt, openProc, type Services } from './services.js';
import { FOPEN_PASSTHROUGH, type OpenOut } from './types.js';

export class OpenFiles {
  /**
   * The backing file of each inode with passthrough opens, by node id, and how many open files
   * use it. The kernel allows one backing file per inode: a second open given another one fails
   * with EIO (fuse_inode_uncached_io_start), so every open of an inode gets the same id, and it is
   * released with the inode's last open. The kernel opens a file of its own on it for each open,
   * with that open's flags, so one registration serves reads and writes alike.
   */
  private readonly backingOf = new Map<bigint, { id: number; opens: number }>();

  constructor(private readonly s: Services) {}

  /**
   * A new fh on `inode` whose fd (ownership passes here) is `fd`; `permanent`: never evicted.
   * `reply` builds the answer while the fd is still held.
   */
  add(inode: Inode, kind: 'file' | 'dir', flags: number, fd: number, permanent: boolean, reply: (h: OpenHandle, fd: number) => OpenOut): OpenOut {
    const h = this.s.handles.add(inode, kind, flags);
    this.s.cache.insertPinned(h.fdKey, fd, 'file', permanent);
    try {
      return reply(h, fd);
    } finally {
      this.s.cache.unpin(h.fdKey, fd);
    }
  }

  /** Borrow the fd of an open file or directory, reopening it if it was evicted. Pair with release(). */
  acquire(h: OpenHandle): number {
    const s = this.s;
    const fd = s.cache.pin(h.fdKey);
    if (fd !== undefined) return fd;
    if (h.inode.unlinked) throw new FsError(E.ESTALE, 'unlinked file lost its fd');
    const nfd = s.fds.with(h.inode, (ifd) => {
      s.cache.reserve();
      return h.kind === 'dir' ? openAt(s, ifd, DOT, O_RDONLY | O_DIRECTORY, 0) : openProc(s, ifd, h.flags);
    });
    h.cursorValid = false;
    s.cache.insertPinned(h.fdKey, nfd, 'file', h.locked || h.inode.unlinked);
    return nfd;
  }

  release(h: OpenHandle, fd: number): void {
    this.s.cache.unpin(h.fdKey, fd);
  }

  with<T>(h: OpenHandle, fn: (fd: number) => T): T {
    const fd = this.acquire(h);
    try {
      return fn(fd);
    } finally {
      this.release(h, fd);
    }
  }

  async withAsync<T>(h: OpenHandle, fn: (fd: number) => T | Promise<T>): Promise<T> {
    const fd = this.acquire(h);
    try {
      return await fn(fd);
    } finally {
      this.release(h, fd);
    }
  }

  /**
   * The reply to an open of a file: the fh, and under FUSE passthrough the backing file registered
   * for it. A setuid or setgid file is served through the server: the kernel writes a backing file
   * with the server's credentials (CAP_FSETID), so a write by another user would keep the bits
   * that WRITE's FUSE_WRITE_KILL_SUIDGID has the server clear.
   */
  readonly fileReply = (h: OpenHandle, fd: number): OpenOut => {
    const s = this.s;
    if (s.negotiated.passthrough && s.backing && !isSetId(statAt(fd, EMPTY, AT_EMPTY_PATH).mode)) {
      const known = this.backingOf.get(h.inode.nodeid);
      if (known) {
        known.opens++;
        h.backingId = known.id;
        return { fh: h.fh, openFlags: FOPEN_PASSTHROUGH, backingId: known.id };
      }
      try {
        h.backingId = s.backing.open(fd);
        this.backingOf.set(h.inode.nodeid, { id: h.backingId, opens: 1 });
        // the kernel holds its own reference to the file: reads and writes go to it directly
        return { fh: h.fh, openFlags: FOPEN_PASSTHROUGH, backingId: h.backingId };
      } catch (e) {
        s.once.warn('backing', { code: (e as { code?: string }).code }, 'cannot register a backing file; serving reads and writes through the server');
      }
    }
    return { fh: h.fh, openFlags: fileOpenFlags(s.opts.cache) };
  };

  /** RELEASE / RELEASEDIR: the fh goes, its fd is closed, and the inode may leave memory. */
  close(h: OpenHandle): void {
    const s = this.s;
    const b = h.backingId === null ? undefined : this.backingOf.get(h.inode.nodeid);
    if (b && --b.opens === 0) {
      this.backingOf.delete(h.inode.nodeid);
      try {
        s.backing?.close(b.id);
      } catch {
        /* the connection is gone: so is the backing file */
      }
    }
    h.backingId = null;
    s.handles.remove(h);
    // another thread may still borrow its fd: the cache closes it once given back
    s.cache.remove(h.fdKey);
    s.store.maybeDrop(h.inode);
  }

  /** The flags an open of the client's becomes on the host (and on every reopen). */
  hostFlags(flags: number): number {
    // O_NOFOLLOW: the kernel resolved the name; on the /proc magic link it would be ELOOP
    let f = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_NOFOLLOW);
    // virtiofsd drops O_NOATIME unless asked to keep it: without CAP_FOWNER it fails (EPERM) on
    // files the server does not own
    if (!this.s.opts.preserveNoatime) f &= ~O_NOATIME;
    if (this.s.negotiated.writeback) {
      // the kernel may read to fill pages of a write-only file, and it handles O_APPEND itself
      if ((f & O_ACCMODE) === O_WRONLY) f = (f & ~O_ACCMODE) | O_RDWR;
      f &= ~O_APPEND;
    }
    return f;
  }
}

/** Setuid, or setgid with group execute (setgid alone marks mandatory locking, not privilege). */
function isSetId(mode: number): boolean {
  return (mode & S_ISUID) !== 0 || ((mode & S_ISGID) !== 0 && (mode & 0o010) !== 0);
}
