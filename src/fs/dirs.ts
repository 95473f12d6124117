/**
 * Directory listings: opendir, readdir, readdirplus (a lookup per entry), releasedir. Cookies
 * are the host's d_off, valid across calls, seekdir/telldir and fd eviction (the fd is re-seeked
 * after a reopen).
 */
import { E, FsError, toErrno } from '../errors.js';
import { sys, parseDirents, O_DIRECTORY, O_RDONLY, SEEK_SET, S_IFDIR } from '../sys/syscalls.js';
import { dirOpenFlags } from './cache-policy.js';
import { isDotName } from './names.js';
import type { Confinement } from './confinement.js';
import type { Entries, Reached } from './entries.js';
import type { OpenHandle } from './handle-table.js';
import type { OpenFiles } from './open-files.js';
import { DOT, entryOf, openAt, type Services } from './services.js';
import type { DirEntry, Entry, OpenOut } from './types.js';

const DIRENT_BUF = 32 * 1024;

export class Dirs {
  private readonly direntBuf = Buffer.allocUnsafe(DIRENT_BUF);

  constructor(
    private readonly s: Services,
    private readonly conf: Confinement,
    private readonly entries: Entries,
    private readonly open: OpenFiles,
  ) {}

  async opendir(nodeid: bigint): Promise<OpenOut> {
    const s = this.s;
    const inode = s.records.inode(nodeid);
    if (inode.type !== S_IFDIR) throw new FsError(E.ENOTDIR);
    const fd = s.fds.with(inode, (ifd) => {
      this.conf.confirmInside(inode, ifd);
      s.cache.reserve();
      return openAt(s, ifd, DOT, O_RDONLY | O_DIRECTORY, 0);
    });
    return this.open.add(inode, 'dir', O_RDONLY | O_DIRECTORY, fd, inode.unlinked, (h) => {
      h.cursorValid = true;
      h.pendingFrom = 0n;
      return { fh: h.fh, openFlags: dirOpenFlags(s.opts.cache) };
    });
  }

  async readdir(nodeid: bigint, fh: bigint, offset: bigint, add: (e: DirEntry) => boolean): Promise<void> {
    const h = this.s.handles.get(fh, nodeid, 'dir');
    this.open.with(h, (fd) => {
      this.conf.confirmInside(h.inode, fd);
      this.walk(h, fd, offset, add);
    });
  }

  async readdirplus(nodeid: bigint, fh: bigint, offset: bigint, add: (e: DirEntry, entry: Entry | null) => boolean): Promise<void> {
    const s = this.s;
    const h = s.handles.get(fh, nodeid, 'dir');
    const dir = h.inode;
    this.open.with(h, (fd) => {
      this.conf.confirmInside(dir, fd);
      this.walk(h, fd, offset, (d) => {
        if (isDotName(d.name)) return add(d, null);
        let r;
        try {
          r = this.lookupEntry(h, fd, d.name);
        } catch (err) {
          // vanished between getdents and the lookup: list it without attributes
          if (toErrno(err) === E.ENOENT) return add(d, null);
          throw err;
        }
        if (add(d, entryOf(s, r.inode, r.st))) return true;
        s.store.forget(r.inode, 1); // not sent: undo its lookup
        return false;
      });
    });
  }

  /**
   * One READDIRPLUS entry's lookup. A directory listed again (du after find, ls -l twice) names
   * inodes the server knows: each is then reached without an open (Entries.lookupKnown: two
   * syscalls instead of four). In a first listing that try is one syscall more per entry for
   * nothing, so it is made only while this listing's tries found at least as many known inodes as
   * unknown ones (a first listing stops at its first miss).
   */
  private lookupEntry(h: OpenHandle, fd: number, name: Buffer): Reached {
    const dir = h.inode;
    if (dir.children > 0 && h.plusUnknown <= h.plusKnown) {
      const r = this.entries.lookupKnown(dir, fd, name);
      if (r instanceof FsError) throw r;
      if (r) {
        h.plusKnown++;
        return r;
      }
      h.plusUnknown++;
    }
    return this.entries.lookupAt(dir, fd, name);
  }

  /**
   * Walk the directory from cookie `offset`, handing each record to `visit` until it returns
   * false. Records read from the host but not taken stay in the handle, so the next call (which
   * resumes at the last taken record's cookie) needs no seek.
   */
  private walk(h: OpenHandle, fd: number, offset: bigint, visit: (d: DirEntry) => boolean): void {
    if (!(h.cursorValid && h.pendingFrom === offset)) {
      sys.lseek(fd, offset, SEEK_SET);
      h.pending = [];
      h.pendingIdx = 0;
      h.pendingFrom = offset;
      h.cursorValid = true;
    }
    for (;;) {
      if (h.pendingIdx >= h.pending.length) {
        const n = sys.getdents64(fd, this.direntBuf);
        if (n === 0) {
          h.pending = [];
          h.pendingIdx = 0;
          return;
        }
        h.pending = parseDirents(this.direntBuf, n);
        h.pendingIdx = 0;
      }
      const d = h.pending[h.pendingIdx]!;
      if (!visit(d)) return;
      h.pendingIdx++;
      h.pendingFrom = d.off;
    }
  }
}
