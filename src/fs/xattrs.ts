/**
 * Extended attributes. xattr calls refuse O_PATH fds (EBADF), so they go through
 * /proc/self/fd/N of the inode's O_PATH fd with the following calls: the magic link resolves to
 * the fd's own file (the symlink itself for a symlink), and nothing is opened for I/O.
 */
import { E, FsError } from '../errors.js';
import { sys, procFdPath, XATTR_CREATE, XATTR_REPLACE, XATTR_SIZE_MAX } from '../sys/syscalls.js';
import type { Confinement } from './confinement.js';
import type { Inode } from './inode-store.js';
import type { Services } from './services.js';
import type { XattrReply } from './types.js';

export class Xattrs {
  constructor(private readonly s: Services, private readonly conf: Confinement) {}

  async setxattr(nodeid: bigint, name: Buffer, value: Buffer, flags: number): Promise<void> {
    checkXattrName(name);
    if (value.length > XATTR_SIZE_MAX) throw new FsError(E.E2BIG ?? E.ERANGE);
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) throw new FsError(E.EINVAL);
    this.byPath(this.s.records.inode(nodeid), (p) => sys.setxattr(p, name, value, flags));
  }

  async getxattr(nodeid: bigint, name: Buffer, size: number): Promise<XattrReply> {
    checkXattrName(name);
    const inode = this.s.records.inode(nodeid);
    const buf = size === 0 ? null : Buffer.allocUnsafe(Math.min(size, XATTR_SIZE_MAX));
    // ENODATA is the usual answer: the kernel asks for security.capability before a file's first
    // write, while the writer holds it open, so the open file's fd answers without a /proc walk
    let n = this.byOpenFile(inode, (fd) => sys.fgetxattrTry(fd, name, buf));
    if (n === null) n = this.byPath(inode, (p) => sys.getxattrTry(p, name, buf));
    if (n < 0) throw new FsError(-n, 'getxattr');
    if (buf === null) return { size: n };
    return { value: buf.subarray(0, n) };
  }

  async listxattr(nodeid: bigint, size: number): Promise<XattrReply> {
    const inode = this.s.records.inode(nodeid);
    if (size === 0) return { size: this.byPath(inode, (p) => sys.listxattr(p, null)) };
    const buf = Buffer.allocUnsafe(Math.min(size, XATTR_SIZE_MAX));
    const n = this.byPath(inode, (p) => sys.listxattr(p, buf));
    return { value: buf.subarray(0, n) };
  }

  async removexattr(nodeid: bigint, name: Buffer): Promise<void> {
    checkXattrName(name);
    this.byPath(this.s.records.inode(nodeid), (p) => sys.removexattr(p, name));
  }

  /** fn on the fd of a file open on `inode` when one is cached (proven inside), else null. */
  private byOpenFile(inode: Inode, fn: (fd: number) => number): number | null {
    const s = this.s;
    const h = inode.openFile;
    if (!h || !s.opts.xattr) return null;
    const fd = s.cache.pin(h.fdKey);
    if (fd === undefined) return null;
    try {
      this.conf.confirmInside(inode, fd);
      return fn(fd);
    } finally {
      s.cache.unpin(h.fdKey, fd);
    }
  }

  /** fn on /proc/self/fd/N of the inode's O_PATH fd, proven inside. */
  private byPath<T>(inode: Inode, fn: (p: Buffer) => T): T {
    if (!this.s.opts.xattr) throw new FsError(E.ENOSYS);
    return this.s.fds.with(inode, (fd) => {
      this.conf.confirmInside(inode, fd);
      return fn(procFdPath(fd));
    });
  }
}

function checkXattrName(name: Buffer): void {
  if (name.length === 0 || name.indexOf(0) >= 0) throw new FsError(E.EINVAL);
  if (name.length > 255) throw new FsError(E.ERANGE);
}
