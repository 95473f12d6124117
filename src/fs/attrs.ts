/**
 * Attributes: getattr/statx, setattr (mode, owner, size, times, and the killpriv rules), readlink,
 * access, statfs and syncfs. Metadata calls on O_PATH fds use the *at(fd, "", AT_EMPTY_PATH) forms.
 */
import { E, FsError } from '../errors.js';
import {
  sys, statAt, statfsFd,
  AT_EACCESS, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, O_WRONLY, R_OK, S_IFDIR, S_IFLNK, S_IFREG, S_ISGID, S_ISUID,
  UTIME_NOW, UTIME_OMIT, W_OK, X_OK,
} from '../sys/syscalls.js';
import type { Confinement } from './confinement.js';
import type { OpenFiles } from './open-files.js';
import { EMPTY, closeQuietly, openProc, statToAttr, type Services } from './services.js';
import {
  FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW,
  FATTR_SIZE, FATTR_UID, type AttrReply, type Context, type SetattrIn, type StatfsOut,
} from './types.js';

/** HANDLE_KILLPRIV_V2: the server clears suid (and sgid with group-exec) on write/truncate. */
export function killSuidgid(fd: number): void {
  const st = statAt(fd, EMPTY, AT_EMPTY_PATH);
  let mode = st.mode & 0o7777;
  if (mode & S_ISUID) mode &= ~S_ISUID;
  if (mode & S_ISGID && mode & 0o010) mode &= ~S_ISGID;
  if (mode !== (st.mode & 0o7777)) sys.fchmodat2(fd, EMPTY, mode, AT_EMPTY_PATH);
}

/** SETATTR's mode and owner changes, through an inode's O_PATH fd (the first steps, before a size change). */
export function setModeOwner(fd: number, a: SetattrIn): void {
  if (a.valid & FATTR_MODE) sys.fchmodat2(fd, EMPTY, a.mode & 0o7777, AT_EMPTY_PATH);
  if (a.valid & (FATTR_UID | FATTR_GID)) {
    const uid = a.valid & FATTR_UID ? a.uid : -1;
    const gid = a.valid & FATTR_GID ? a.gid : -1;
    sys.fchownat(fd, EMPTY, uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  }
}

/** SETATTR's times, through an inode's O_PATH fd (the last step). */
export function setTimes(fd: number, a: SetattrIn): void {
  if (!(a.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW))) return;
  // seconds keep all 64 bits: the host clamps what it cannot store, as for a local utimensat
  const [as, an] = a.valid & FATTR_ATIME_NOW ? [0, UTIME_NOW] : a.valid & FATTR_ATIME ? [a.atime.sec, a.atime.nsec] : [0, UTIME_OMIT];
  const [ms, mn] = a.valid & FATTR_MTIME_NOW ? [0, UTIME_NOW] : a.valid & FATTR_MTIME ? [a.mtime.sec, a.mtime.nsec] : [0, UTIME_OMIT];
  sys.utimensat(fd, EMPTY, as, an, ms, mn, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
}

export class Attrs {
  constructor(private readonly s: Services, private readonly conf: Confinement, private readonly open: OpenFiles) {}

  async getattr(nodeid: bigint, fh?: bigint): Promise<AttrReply> {
    const s = this.s;
    const inode = s.records.inode(nodeid);
    if (fh !== undefined && fh !== 0n) {
      const h = s.handles.get(fh, nodeid);
      const st = this.open.with(h, (fd) => statAt(fd, EMPTY, AT_EMPTY_PATH));
      return { attr: statToAttr(st), attrTimeoutMs: s.timeout };
    }
    const st = s.fds.with(inode, (fd) => statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
    return { attr: statToAttr(st), attrTimeoutMs: s.timeout };
  }

  async setattr(nodeid: bigint, a: SetattrIn): Promise<AttrReply> {
    const s = this.s;
    const inode = s.records.inode(nodeid);
    const h = a.valid & FATTR_FH && a.fh !== 0n ? s.handles.get(a.fh, nodeid, 'file') : null;
    s.fds.with(inode, (fd) => {
      // a change of something the host moved out of the share would change the outside
      this.conf.confirmInside(inode, fd);
      setModeOwner(fd, a);
      if (a.valid & FATTR_SIZE) {
        if (inode.type !== S_IFREG) throw new FsError(inode.type === S_IFDIR ? E.EISDIR : E.EINVAL);
        // the host decides what size it can hold (EFBIG, or tmpfs taking 2^63-1)
        const size = a.size;
        if (h) this.open.with(h, (ffd) => sys.ftruncate(ffd, size));
        else {
          const wfd = openProc(s, fd, O_WRONLY);
          try {
            sys.ftruncate(wfd, size);
          } finally {
            closeQuietly(wfd);
          }
        }
        if (s.negotiated.killPrivV2 && a.valid & FATTR_KILL_SUIDGID) killSuidgid(fd);
      }
      setTimes(fd, a);
    });
    return this.getattr(nodeid);
  }

  async readlink(nodeid: bigint): Promise<Buffer> {
    const inode = this.s.records.inode(nodeid);
    if (inode.type !== S_IFLNK) throw new FsError(E.EINVAL);
    return this.s.fds.with(inode, (fd) => sys.readlinkat(fd, EMPTY));
  }

  async access(ctx: Context, nodeid: bigint, mask: number): Promise<void> {
    const s = this.s;
    s.fds.with(s.records.inode(nodeid), (fd) => {
      if (!s.isRoot || ctx.uid === 0) {
        sys.faccessat2(fd, EMPTY, mask, AT_EMPTY_PATH | AT_EACCESS);
        return;
      }
      // the server is root: check the requester's rights against the mode bits (owner, then group:
      // its own or a supplementary one, then other)
      const st = statAt(fd, EMPTY, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
      const inGroup = st.gid === ctx.gid || (ctx.groups?.includes(st.gid) ?? false);
      const bits = st.uid === ctx.uid ? (st.mode >> 6) & 7 : inGroup ? (st.mode >> 3) & 7 : st.mode & 7;
      const want = (mask & R_OK ? 4 : 0) | (mask & W_OK ? 2 : 0) | (mask & X_OK ? 1 : 0);
      if ((bits & want) !== want) throw new FsError(E.EACCES);
    });
  }

  async statfs(nodeid: bigint): Promise<StatfsOut> {
    const st = this.s.fds.with(this.s.records.inode(nodeid), (fd) => statfsFd(fd));
    return {
      blocks: st.blocks, bfree: st.bfree, bavail: st.bavail, files: st.files, ffree: st.ffree,
      bsize: Number(st.bsize), namelen: Number(st.namelen), frsize: Number(st.frsize),
    };
  }

  async syncfs(): Promise<void> {
    sys.syncfs(this.s.rootDirFd);
  }
}
