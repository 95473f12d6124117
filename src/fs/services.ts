/**
 * The services record every concern of the passthrough filesystem shares (entries, attrs, files,
 * dirs, xattrs, locks, state, confinement): the tables, the fd cache, the root and what set-up
 * probed. src/fs/setup.ts builds it and owns its fds; src/fs/passthrough.ts is the facade that
 * routes each FileSystem operation to its concern. Plus the few fd helpers all of them use.
 */
import type { Logger } from 'pino';
import { FsError } from '../errors.js';
import type { FileHandle } from '../handle/file-handle.js';
import type { Sealer } from '../handle/seal.js';
import type { LogOnce } from '../log.js';
import { sys, procFdDir, procFdPath, AT_EMPTY_PATH, AT_FDCWD, O_CLOEXEC, S_IFDIR, type Stat } from '../sys/syscalls.js';
import type { ExportTable } from './export-table.js';
import type { FdCache } from './fd-cache.js';
import type { HandleTable } from './handle-table.js';
import type { Inode, InodeStore } from './inode-store.js';
import type { HostChanges } from './host-changes.js';
import type { MoveWatch } from './move-watch.js';
import type { BackingFiles, PassthroughOptions } from './options.js';
import type { InodeFds, ReopenCounters } from './reopen.js';
import type { Records } from './records.js';
import type { SharedFds } from './shared-files.js';
import type { StateFile } from './state-file.js';
import type { Attr, Entry } from './types.js';

export const EMPTY = Buffer.alloc(0);
export const DOT = Buffer.from('.');

/** The filesystem's own counters (the fd cache keeps its own); see PassthroughFs.counters(). */
/** Every FsCounters counter at zero. */
export function newFsCounters(): FsCounters {
  return {
    reopenByPath: 0, reopenByHandle: 0, estale: 0, sealFailures: 0, resurrected: 0, placeChecks: 0, nowaitRefusals: 0, forgetUnknown: 0, forgetUnderflow: 0,
    forgetAfterCrash: 0,
  };
}

export interface FsCounters extends ReopenCounters {
  /** confinement proofs made with a readlink of /proc/self/fd/N (those not kept or inherited) */
  placeChecks: number;
  /** RWF_NOWAIT attempts a filesystem refused as unsupported (once per device and direction) */
  nowaitRefusals: number;
  /**
   * FORGETs the lookup counts do not account for: of a node id the server does not know (and has
   * no record of), and below zero lookups. Either means a count went wrong somewhere; 0 in a
   * correct run.
   */
  forgetUnknown: number;
  forgetUnderflow: number;
  /** FORGETs below a lookup count restored after a worker crash (expected: see F_ROUGH) */
  forgetAfterCrash: number;
}

/** What INIT negotiated (PassthroughFs.init). */
export interface Negotiated {
  writeback: boolean;
  killPrivV2: boolean;
  /** FUSE passthrough is on: open files are registered as kernel backing files */
  passthrough: boolean;
  /** --announce-submounts asked for and FUSE_SUBMOUNTS negotiated */
  submounts: boolean;
}

export interface Services {
  readonly opts: PassthroughOptions;
  readonly log: Logger;
  readonly once: LogOnce;
  readonly sealer: Sealer;
  readonly cache: FdCache;
  readonly store: InodeStore;
  readonly exports: ExportTable;
  readonly handles: HandleTable;
  /** inode O_PATH fds: borrowed from the cache, reopened on demand (the root's is outside it) */
  readonly fds: InodeFds;
  /** node id -> inode, bringing back inodes that left memory from their sealed records */
  readonly records: Records;
  /** renames on the root's filesystem: keeps confinement proofs until something moves */
  readonly moves: MoveWatch;
  /** host changes told to the client (null without PassthroughOptions.onHostChange or without the watch) */
  readonly changes: HostChanges | null;
  readonly root: Inode;
  readonly rootPathFd: number;
  /** a real directory fd of the root: open_by_handle_at's mount fd, syncfs */
  readonly rootDirFd: number;
  /** realpath of the shared directory, as the kernel prints paths in /proc/self/fd */
  readonly rootPath: Buffer;
  /** name_to_handle_at flags (AT_HANDLE_MNT_ID_UNIQUE where the kernel has it) */
  readonly handleFlags: number;
  /** this process's generation: node ids are never reused within it */
  readonly generation: bigint;
  /** entry and attribute timeout of the cache policy */
  readonly timeout: number;
  readonly isRoot: boolean;
  /** linkat(AT_EMPTY_PATH) is allowed (CAP_DAC_READ_SEARCH); otherwise through /proc/self/fd */
  readonly canLinkEmptyPath: boolean;
  readonly backing: BackingFiles | null;
  /** fds published to the other serving threads (PassthroughOptions.sharedFds) */
  readonly shared: SharedFds | null;
  readonly counters: FsCounters;
  readonly negotiated: Negotiated;
  /** --state-file: where records go for a later server (null without the option) */
  readonly stateFile: StateFile | null;
}

export function closeQuietly(fd: number): void {
  try {
    sys.close(fd);
  } catch {
    /* EBADF/EINTR on close: nothing to recover */
  }
}

/**
 * Open a kernel fd with `open` (an fd, or a negative errno); when the process hit its fd limit
 * below the budget, evict one idle cached fd and try once more (FdCache.opened). Failure is an FsError, built
 * cheaply: a negative lookup is common.
 */
export function openFd(s: Services, open: () => number): number {
  const fd = s.cache.opened(open);
  if (fd < 0) throw new FsError(-fd, 'openat');
  return fd;
}

/** openat(dirFd, name) with O_CLOEXEC, through openFd. */
export function openAt(s: Services, dirFd: number, name: Buffer, flags: number, mode: number): number {
  return openFd(s, () => sys.openatTry(dirFd, name, flags | O_CLOEXEC, mode));
}

/** Open the file an fd refers to again, with other flags, through its /proc magic link. */
export function openProc(s: Services, inodeFd: number, flags: number): number {
  return openFd(s, () => sys.openatTry(procFdDir(), procFdPath(inodeFd), flags | O_CLOEXEC, 0));
}

/** The file handle of an fd; null where the filesystem has none (the inode is then pinned). */
export function handleOf(s: Services, fd: number): FileHandle | null {
  try {
    return sys.nameToHandleAt(fd, EMPTY, AT_EMPTY_PATH | s.handleFlags);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'EOVERFLOW') return null;
    throw e;
  }
}

/** A host stat as the attributes the client is told. */
export function statToAttr(st: Stat): Attr {
  return {
    ino: st.ino,
    size: st.size,
    blocks: st.blocks,
    atime: st.atime,
    mtime: st.mtime,
    ctime: st.ctime,
    btime: st.btime,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    rdevMajor: st.rdevMajor,
    rdevMinor: st.rdevMinor,
    blksize: st.blksize,
    attributes: st.attributes,
  };
}

export function entryOf(s: Services, inode: Inode, st: Stat): Entry {
  const e: Entry = { nodeid: inode.nodeid, generation: inode.generation, attr: statToAttr(st), entryTimeoutMs: s.timeout, attrTimeoutMs: s.timeout };
  if (s.negotiated.submounts && isSubmount(inode)) e.submount = true;
  return e;
}

/**
 * A directory on another mount than its parent directory (a mount point below the share): another
 * device, or the same device through another mount (a bind mount), as virtiofsd decides.
 */
export function isSubmount(inode: Inode): boolean {
  const p = inode.parent;
  if (inode.type !== S_IFDIR || !p || p.is(inode)) return false;
  if (inode.dev !== p.dev) return true;
  const m = inode.mountId, pm = p.mountId;
  return m !== null && pm !== null && m !== pm;
}

/** One number for a device (major, minor). */
export function devOf(st: Stat): number {
  return st.devMajor * 0x100000 + st.devMinor;
}

