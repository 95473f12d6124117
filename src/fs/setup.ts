/**
 * Set-up of the passthrough filesystem: open the shared root, probe what the kernel and our
 * capabilities allow (file handles, unique mount ids, open_by_handle_at), size the fd budget and
 * build the services record (src/fs/services.ts). The bundle owns the root fds and the watch;
 * `closeServices` releases them.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { realpathSync } from 'node:fs';
import { handleKey, type FileHandle } from '../handle/file-handle.js';
import { Sealer } from '../handle/seal.js';
import { LogOnce } from '../log.js';
import { growFdTable, nofileLimit, openFdCount, probeCaps } from '../sys/caps.js';
import {
  sys, statAt, AT_EMPTY_PATH, AT_FDCWD, AT_HANDLE_MNT_ID_UNIQUE, O_CLOEXEC, O_DIRECTORY, O_PATH, O_RDONLY, S_IFMT,
} from '../sys/syscalls.js';
import { timeoutMs } from './cache-policy.js';
import { victimMatters } from './entries.js';
import { ExportTable, encodeState } from './export-table.js';
import { FdCache } from './fd-cache.js';
import { ROOT_ID } from './filesystem.js';
import { HandleTable, type OpenHandle } from './handle-table.js';
import type { FdShare } from './fd-cache.js';
import { SHARED_LOCK_OWNERS, SHARED_ROOT_MOUNT, type SharedFds } from './shared-files.js';
import { Inode, InodeStore } from './inode-store.js';
import { HostChanges } from './host-changes.js';
import { MoveWatch } from './move-watch.js';
import type { PassthroughOptions } from './options.js';
import { InodeFds } from './reopen.js';
import { DOT, EMPTY, closeQuietly, devOf, newFsCounters, type Services } from './services.js';
import { Records, recordOf } from './records.js';
import { exportState, importState } from './state.js';
import { StateFile } from './state-file.js';

/** fds outside the budget: root O_PATH + root dir fd + transient fds (truncate, xattr, '..' walks) */
const FD_RESERVE = 8;
/**
 * The fd table is grown at start to hold the budget, up to this many fds (512 KiB of the kernel's
 * file pointers); a larger budget's table grows further by doubling as the cache fills.
 */
const FD_TABLE_AT_START = 1 << 16;

export function openServices(opts: PassthroughOptions): Services {
  const log = opts.log.child({ component: 'fs' });
  const rootPath = Buffer.from(realpathSync(opts.root));
  const rootPathFd = sys.openat(AT_FDCWD, rootPath, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  let rootDirFd = -1;
  try {
    // a real directory fd: open_by_handle_at rejects an O_PATH mount fd with EBADF
    rootDirFd = sys.openat(rootPathFd, DOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    return build(opts, log, rootPath, rootPathFd, rootDirFd);
  } catch (e) {
    if (rootDirFd >= 0) closeQuietly(rootDirFd);
    closeQuietly(rootPathFd);
    throw e;
  }
}

export function closeServices(s: Services): void {
  // a clean stop compacts the state file: the next start reads one frame
  s.stateFile?.close(true);
  s.cache.clear();
  s.moves.close();
  s.changes?.close();
  closeQuietly(s.rootDirFd);
  closeQuietly(s.rootPathFd);
}

function build(opts: PassthroughOptions, log: Services['log'], rootPath: Buffer, rootPathFd: number, rootDirFd: number): Services {
  const handleFlags = probeHandleFlags(rootPathFd);
  let rootHandle: FileHandle;
  try {
    rootHandle = sys.nameToHandleAt(rootPathFd, EMPTY, AT_EMPTY_PATH | handleFlags);
  } catch (e) {
    throw new Error(`the shared directory's filesystem does not support file handles (${(e as Error).message}); handlefs needs them`);
  }
  const sealer = new Sealer(opts.key, Buffer.concat([Buffer.from(String(rootHandle.type)), rootHandle.bytes]), opts.previousKeys ?? []);
  // a per-process generation: node ids are never reused within a process; across processes the
  // generation tells an old client handle apart
  const generation = BigInt((randomBytes(4).readUInt32LE(0) | 1) >>> 0);

  const caps = probeCaps();
  let strategy: 'handle' | 'path' = 'path';
  if (opts.reopen === 'handle' || (opts.reopen === 'auto' && caps.dacReadSearch)) {
    strategy = probeOpenByHandle(rootDirFd, rootHandle) ? 'handle' : 'path';
    if (opts.reopen === 'handle' && strategy !== 'handle') {
      throw new Error('--reopen handle needs CAP_DAC_READ_SEARCH (open_by_handle_at is refused); use --reopen path or auto');
    }
  }

  const counters = newFsCounters();
  const open = openFdCount();
  const budget = fitBudget(opts.fdBudget === 'auto' ? autoBudget() : opts.fdBudget, open, log);
  // one growth of the fd table now, to the highest fd the cache can reach (fitBudget keeps it
  // under RLIMIT_NOFILE), instead of one per doubling while the first requests fill the cache
  const tableFds = Math.min(FD_TABLE_AT_START, Math.max(0, open) + budget + FD_RESERVE);
  if (!growFdTable(rootPathFd, tableFds)) log.debug({ fds: tableFds }, 'could not grow the fd table at start');
  // an evicted directory fd loses its position: its listing seeks again on next use
  const shared = opts.sharedFds ?? null;
  const cache = new FdCache(budget, closeQuietly, log, (key) => {
    const h = handles.byKey(key);
    if (h) h.cursorValid = false;
  }, shared ? fdShare(shared, (key): OpenHandle | undefined => handles.byKey(key), (id): Inode | undefined => store.get(id), rootHandle.mountId) : null);
  // records are of reopenable inodes, all on the root's mount
  const exports = new ExportTable(opts.exportTableSize ?? 100_000,
    (r) => handleKey(r.handleType, r.handle));
  // an inode leaving memory gives up its fd and leaves its record behind
  const store = new InodeStore(ROOT_ID, log, (inode) => {
    cache.remove(inode.fdKey);
    const r = recordOf(inode, 0);
    // a count restored after a crash may have reached 0 before the client's: the record keeps saying so
    if (r && inode.countApproximate) r.approximate = true;
    if (r) exports.put(r, inode.identity);
  }, shared?.inodeTable ?? null);
  const rootStat = statAt(rootPathFd, EMPTY, AT_EMPTY_PATH);
  // the device is what a child directory is compared with to find a submount
  const root = store.create({
    nodeid: ROOT_ID, generation, type: rootStat.mode & S_IFMT, handle: rootHandle, seal: sealer.seal(rootHandle.type, rootHandle.bytes),
    reopenable: false, dev: devOf(rootStat), ino: rootStat.ino,
  });
  root.nlookup = 1;
  // the root's O_PATH fd lives as long as the filesystem: other threads may stat it
  shared?.inodes.publish(ROOT_ID, ROOT_ID, rootPathFd, root.type, root.dev);
  // the root's O_PATH fd and dir fd are the reserve, outside the budget: never evicted
  const fds = new InodeFds(cache, sealer, strategy, rootDirFd, rootHandle, handleFlags, log, root, rootPathFd, counters);
  // each new or moved inode's sealed record goes to the state file and to the caller's stream
  let stateFile: StateFile | null = null;
  const stream = opts.onRecord ?? null;
  const onRecord = opts.stateFile || stream ? (b: Buffer): void => {
    stateFile?.append(b);
    stream?.(b);
  } : null;
  const records = new Records({ store, exports, cache, fds, sealer, root, generation, counters, log, onRecord });
  // the other threads remove names only while no victim matters to the books (Entries.removeName)
  const removals = shared ? (): void => shared.removals.watch(victimMatters(handles, store)) : null;
  // open files go to the caller's stream only: the state file's server starts with none open
  const handles = new HandleTable((nodeid) => records.inode(nodeid), stream
    ? (h) => stream(encodeState(sealer, { nextNodeid: store.next, generation, records: [], handles: [h] }))
    : null, removals);
  store.onMultiLinked = removals;
  const listener = opts.onHostChange ?? null;
  let changes = listener ? new HostChanges(listener, store, rootHandle.mountId) : null;
  const moves = new MoveWatch(rootPath, log, changes);
  if (changes && !moves.enabled) {
    changes = null;
    log.info({ code: moves.failure },
      'host changes are not told to the client: no fanotify watch of the shared filesystem (it needs CAP_SYS_ADMIN and file handles); the client sees them when its cache times out');
  }
  const s: Services = {
    opts, log, once: new LogOnce(log), sealer, cache, store, exports, handles, fds, records, moves, changes, root,
    rootPathFd, rootDirFd, rootPath, handleFlags, generation, timeout: timeoutMs(opts.cache),
    isRoot: typeof process.getuid === 'function' && process.getuid() === 0,
    canLinkEmptyPath: caps.dacReadSearch, backing: opts.backing ?? null, shared, counters,
    negotiated: { writeback: false, killPrivV2: false, passthrough: false, submounts: false },
    get stateFile() {
      return stateFile;
    },
  };
  if (opts.stateFile) {
    // the records a previous server left: the client of this mount holds no lookups of them yet
    try {
      stateFile = StateFile.open(opts.stateFile, log, (blob) => importState(s, blob, true), () => exportState(s));
    } catch (e) {
      moves.close();
      throw e;
    }
  }
  log.info({ root: opts.root, budget, reopen: strategy, handleFlags, renameWatch: moves.enabled, hostChanges: changes !== null, stateFile: opts.stateFile ?? null }, 'filesystem ready');
  return s;
}

/**
 * The fd cache's fds as the other serving threads see them: an inode's O_PATH fd (key `i<node
 * id>`) by node id with its type, an open file's (key `f<fh>`) by fh with its flags; a
 * directory's open fd is not lent (its cursor is this thread's). Withdrawn by the key alone: a
 * released file's handle is gone by then. An inode on the root's mount is marked
 * SHARED_ROOT_MOUNT: a rename watch there keeps proofs of its place.
 */
function fdShare(
  shared: SharedFds, handleOf: (key: string) => OpenHandle | undefined, inodeOf: (id: bigint) => Inode | undefined, rootMountId: bigint,
): FdShare {
  return {
    publish(key, fd, kind) {
      if (kind === 'path') {
        const inode = inodeOf(BigInt(key.slice(1)));
        const onRoot = inode?.mountId === rootMountId;
        if (inode) shared.inodes.publish(inode.nodeid, inode.nodeid, fd, inode.type, inode.dev, onRoot ? SHARED_ROOT_MOUNT : 0);
        return;
      }
      const h = handleOf(key);
      if (h && h.kind === 'file') shared.files.publish(h.fh, h.inode.nodeid, fd, h.flags, h.inode.dev, h.lockOwners?.size ? SHARED_LOCK_OWNERS : 0);
    },
    withdraw(key, kind, closing) {
      return (kind === 'path' ? shared.inodes : shared.files).withdraw(BigInt(key.slice(1)), closing);
    },
  };
}

/** AT_HANDLE_MNT_ID_UNIQUE (6.12+) gives 64-bit mount ids that are never reused; older kernels: EINVAL. */
function probeHandleFlags(rootFd: number): number {
  try {
    sys.nameToHandleAt(rootFd, EMPTY, AT_EMPTY_PATH | AT_HANDLE_MNT_ID_UNIQUE);
    return AT_HANDLE_MNT_ID_UNIQUE;
  } catch {
    return 0;
  }
}

function probeOpenByHandle(mountFd: number, h: FileHandle): boolean {
  try {
    const fd = sys.openByHandleAt(mountFd, h.type, h.bytes, O_PATH | O_CLOEXEC);
    sys.close(fd);
    return true;
  } catch {
    return false;
  }
}

/**
 * The budget RLIMIT_NOFILE leaves room for: the soft limit minus the fds already open (`open`: the
 * transport's, the log's, the root's; -1 where they cannot be counted) and the reserve. A budget asked beyond it would end in
 * EMFILE from the kernel before the cache ever evicts; it is lowered, with one warning. Where the
 * open fds cannot be counted (no /proc), the budget stays and EMFILE evicts (openFd, InodeFds).
 */
function fitBudget(asked: number, open: number, log: Logger): number {
  const soft = nofileLimit().soft;
  if (soft < 0 || open < 0) return asked;
  const room = soft - open - FD_RESERVE;
  if (asked <= room) return asked;
  const budget = Math.max(4, room);
  log.warn({ asked, budget, nofile: soft, open }, `fd budget ${asked} does not fit RLIMIT_NOFILE ${soft} (${open} fds already open, ${FD_RESERVE} reserved): using ${budget}`);
  return budget;
}

/** Budget from RLIMIT_NOFILE: the soft limit minus a reserve for the server's own fds. */
function autoBudget(): number {
  const soft = nofileLimit().soft;
  const lim = soft < 0 ? 1 << 20 : soft;
  return Math.max(16, Math.min(lim - 64 - FD_RESERVE, 1 << 20));
}
