import type { Logger } from 'pino';
import type { SharedFds } from './shared-files.js';
import type { XattrMap } from './xattr-map.js';

/** Cache policy, as virtiofsd's CachePolicy: how long the client may trust what it was told. */
export type CachePolicy = 'never' | 'metadata' | 'auto' | 'always';

/** How evicted inode fds are reopened: 'auto' probes CAP_DAC_READ_SEARCH at start. */
export type ReopenStrategy = 'auto' | 'handle' | 'path';

/** Options of PassthroughFs (src/fs/passthrough.ts); src/config.ts builds them from the command line. */
export interface PassthroughOptions {
  /** absolute path of the shared directory */
  root: string;
  /** most fds the FdCache keeps open on the tree; 'auto' derives it from RLIMIT_NOFILE minus a reserve */
  fdBudget: number | 'auto';
  reopen: ReopenStrategy;
  /** 32-byte sealing key (src/handle/key.ts): ephemeral or from --handle-key-file */
  key: Buffer;
  /** keys rotated out of the key file but still accepted when verifying (grace period) */
  previousKeys?: Buffer[];
  cache: CachePolicy;
  /** serve xattr operations (false: ENOSYS, so the client stops asking) */
  xattr: boolean;
  /**
   * FUSE_POSIX_ACL is negotiated: the client does not apply the umask, so a create in a directory
   * with a default ACL ignores it, as the host would (posix_acl_create)
   */
  posixAcl?: boolean;
  /** --xattrmap: client xattr names mapped to host names and back (absent: names pass unchanged) */
  xattrmap?: XattrMap | null;
  /** FUSE_SUBMOUNTS: entries of directories on another mount than their parent carry the submount flag */
  announceSubmounts?: boolean;
  /** open with O_NOATIME when the client did (virtiofsd --preserve-noatime); otherwise it is dropped */
  preserveNoatime?: boolean;
  /** when running as root, create files with the requester's uid/gid (as virtiofsd does) */
  creds: boolean;
  log: Logger;
  /** records kept for inodes that left memory, so persistent client handles resolve (default 100,000) */
  exportTableSize?: number;
  /**
   * The state file (src/fs/state-file.ts): loaded at start, then every new or moved inode's sealed
   * record is appended, so that a later server with the same key resolves the client's handles.
   */
  stateFile?: string | null;
  /**
   * FUSE passthrough: registers an open file's fd with the kernel as a backing file (the /dev/fuse
   * transport provides it: FUSE_DEV_IOC_BACKING_OPEN/CLOSE). With it, reads and writes of that file
   * never reach the server. Absent: they are served through the server.
   */
  backing?: BackingFiles | null;
  /**
   * Called with a sealed one-record state whenever an inode a client may name appears or moves (a
   * supervisor keeps them so that a crashed worker's successor can resolve the same node ids).
   */
  onRecord?: ((sealed: Buffer) => void) | null;
  /**
   * Told at once when the host changes something the client may have cached (src/fs/host-changes.ts:
   * a fanotify watch of the shared directory's filesystem); the transport turns it into cache
   * invalidations. Absent: the client learns of host changes when its cache times out.
   */
  onHostChange?: HostChangeListener | null;
  /**
   * Other serving threads use cached fds themselves (src/fs/shared-files.ts): every open file's
   * and inode's fd is published here while it is cached, and withdrawn before it is closed.
   */
  sharedFds?: SharedFds | null;
  /**
   * With other serving threads: called when the order in which requests reached this thread
   * matters (a flock refused while a RELEASE read by another thread may still be on its way);
   * returns once what the other threads read before is handled (ServingThreads.settle).
   */
  settle?: (() => void) | null;
}

/** Invalidations of the client's cache (FUSE_NOTIFY_INVAL_ENTRY / FUSE_NOTIFY_INVAL_INODE on /dev/fuse). */
export interface HostChangeListener {
  /** the name `name` in directory `parent` appeared, vanished or moved */
  invalEntry(parent: bigint, name: Buffer): void;
  /** the attributes of `nodeid` changed, and its content too when `data` */
  invalInode(nodeid: bigint, data: boolean): void;
}

/** Kernel backing files of FUSE passthrough (src/frontends/devfuse/mount.ts backingRegistry). */
export interface BackingFiles {
  open(fd: number): number;
  close(id: number): void;
}
