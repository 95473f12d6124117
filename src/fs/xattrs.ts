/**
 * Extended attributes. xattr calls refuse O_PATH fds (EBADF), so they go through
 * /proc/self/fd/N of the inode's O_PATH fd with the following calls: the magic link resolves to
 * the fd's own file (the symlink itself for a symlink), and nothing is opened for I/O.
 * With --xattrmap (src/fs/xattr-map.ts) every client name is mapped before it reaches the host and
 * every listed host name after.
 */
import { E, failure, FsError } from '../errors.js';
import { sys, withProcFdPath, XATTR_CREATE, XATTR_REPLACE, XATTR_SIZE_MAX } from '../sys/syscalls.js';
import type { Confinement } from './confinement.js';
import type { XattrOp } from './xattr-map.js';
import type { Inode } from './inode-store.js';
import type { Services } from './services.js';
import type { Context, XattrReply } from './types.js';

export class Xattrs {
  constructor(private readonly s: Services, private readonly conf: Confinement) {}

  async setxattr(nodeid: bigint, clientName: Buffer, value: Buffer, flags: number): Promise<void> {
    const name = hostName(this.s, clientName, 'set');
    if (value.length > XATTR_SIZE_MAX) throw new FsError(E.E2BIG ?? E.ERANGE);
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) throw new FsError(E.EINVAL);
    this.byPath(this.s.records.inode(nodeid), (p) => sys.setxattr(p, name, value, flags));
  }

  /** The host's failure (ENODATA, the usual one) resolves to failure(errno). */
  async getxattr(nodeid: bigint, clientName: Buffer, size: number): Promise<XattrReply | FsError> {
    const name = hostName(this.s, clientName, 'get');
    const inode = this.s.records.inode(nodeid);
    const buf = size === 0 ? null : Buffer.allocUnsafe(Math.min(size, XATTR_SIZE_MAX));
    // ENODATA is the usual answer: the kernel asks for security.capability before a file's first
    // write, while the writer holds it open, so the open file's fd answers without a /proc walk
    let n = this.byOpenFile(inode, (fd) => sys.fgetxattrTry(fd, name, buf));
    if (n === null) n = this.byPath(inode, (p) => sys.getxattrTry(p, name, buf));
    if (n < 0) return failure(-n);
    if (buf === null) return { size: n };
    return { value: buf.subarray(0, n) };
  }

  async listxattr(nodeid: bigint, size: number): Promise<XattrReply> {
    const inode = this.s.records.inode(nodeid);
    const map = this.s.opts.xattrmap;
    if (map) {
      // the client's list differs in length from the host's: read all of it, then answer
      const list = map.filterList(this.byPath(inode, hostList));
      return size === 0 ? { size: list.length } : { value: list };
    }
    if (size === 0) return { size: this.byPath(inode, (p) => sys.listxattr(p, null)) };
    const buf = Buffer.allocUnsafe(Math.min(size, XATTR_SIZE_MAX));
    const n = this.byPath(inode, (p) => sys.listxattr(p, buf));
    return { value: buf.subarray(0, n) };
  }

  async removexattr(nodeid: bigint, clientName: Buffer): Promise<void> {
    const name = hostName(this.s, clientName, 'remove');
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
      return withProcFdPath(fd, fn);
    });
  }
}

/** The host's name for a client's (checked) name, or the FsError the mapping refuses it with. */
function hostName(s: Services, name: Buffer, op: XattrOp): Buffer {
  checkXattrName(name);
  const map = s.opts.xattrmap;
  if (!map) return name;
  const h = map.toHost(name, op);
  if (typeof h === 'number') throw new FsError(h, 'refused by --xattrmap');
  return h;
}

/**
 * Put the security label the client's kernel sent (--security-label) on a node just made, through
 * `fd` (its O_PATH fd or an fd open on it), before the client learns of the node, as virtiofsd
 * does. The name goes through --xattrmap like any client xattr name.
 */
export function setLabel(s: Services, ctx: Context, fd: number): void {
  const l = ctx.secctx;
  if (!l) return;
  withProcFdPath(fd, (p) => sys.setxattr(p, hostName(s, l.name, 'set'), l.value, 0));
}

/** setLabel on a node just made as `name` in the directory `dirFd`; a node that cannot have it is removed (virtiofsd). */
export function labelNewNode(s: Services, ctx: Context, fd: number, dirFd: number, name: Buffer, unlinkFlags: number): void {
  try {
    setLabel(s, ctx, fd);
  } catch (e) {
    try {
      sys.unlinkat(dirFd, name, unlinkFlags);
    } catch {
      /* renamed or removed meanwhile */
    }
    throw e;
  }
}

/** Every name of a host listxattr (the list may grow between the size probe and the read: retried). */
function hostList(p: Buffer): Buffer {
  for (let tries = 1; ; tries++) {
    const n = sys.listxattr(p, null);
    if (n === 0) return Buffer.alloc(0);
    const buf = Buffer.allocUnsafe(Math.min(n, XATTR_SIZE_MAX));
    try {
      return buf.subarray(0, sys.listxattr(p, buf));
    } catch (e) {
      if (tries >= 3 || (e as FsError).errno !== E.ERANGE) throw e;
    }
  }
}

/** A client's xattr name: not empty, no NUL (EINVAL), at most 255 bytes (ERANGE). */
export function checkXattrName(name: Buffer): void {
  if (name.length === 0 || name.indexOf(0) >= 0) throw new FsError(E.EINVAL);
  if (name.length > 255) throw new FsError(E.ERANGE);
}
