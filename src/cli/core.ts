/**
 * What every way of serving builds first: the sealing keys and the filesystem core in the
 * decorators the options ask for (--translate-uid/-gid, --readonly).
 */
import type { Logger } from 'pino';
import { passthroughOptions, type Config, type SealingKeys } from '../config.js';
import type { FileSystem } from '../fs/filesystem.js';
import type { PassthroughOptions } from '../fs/options.js';
import type { PassthroughFs } from '../fs/passthrough.js';
import { timeoutMs } from '../fs/cache-policy.js';
import type { SharedFds } from '../fs/shared-files.js';
import type { SharedInodeLink } from '../fs/shared-inodes.js';
import type { SharedTables, ThreadFsOptions } from '../frontends/thread-server.js';

export async function loadKeys(cfg: Config): Promise<SealingKeys> {
  const { ephemeralKey, loadOrCreateKeys } = await import('../handle/key.js');
  // one key for every worker of a supervised server: a successor must verify its predecessor's seals
  const [key, ...previousKeys] = cfg.handleKeyFile ? loadOrCreateKeys(cfg.handleKeyFile) : [ephemeralKey()];
  return { key: key!, previousKeys };
}

/** What a transport connects the core to: FUSE passthrough backing files, host-change notifications. */
export type CoreWiring = Pick<PassthroughOptions, 'backing' | 'onHostChange' | 'sharedFds' | 'settle'>;

/** The core on `root` (the shared directory's realpath), and the FileSystem the protocol server is given. */
export async function makeCore(cfg: Config, root: string, keys: SealingKeys, log: Logger, wiring: CoreWiring = {}):
Promise<{ core: PassthroughFs; fsys: FileSystem }> {
  const [{ PassthroughFs }, { decorate }] = await Promise.all([import('../fs/passthrough.js'), import('../fs/decorate.js')]);
  const core = new PassthroughFs(passthroughOptions(cfg, root, keys, log, wiring));
  return { core, fsys: decorate(core, cfg) };
}

/** Entries of the tables the serving threads share; beyond them, files and inodes are served by the owner alone. */
const SHARED_OPEN_FILES = 1 << 16;
const SHARED_INODE_FDS = 1 << 17;

/** The state the owner shares with its other serving threads (--threads above 1): the fd tables, the removal gate, the inode table. */
export async function sharedState(): Promise<SharedFds & { inodeTable: SharedInodeLink; buffers: SharedTables }> {
  const [{ SharedFileTable, SharedRemovalGate }, { SharedInodeLink }] = await Promise.all([import('../fs/shared-files.js'), import('../fs/shared-inodes.js')]);
  const files = SharedFileTable.create(SHARED_OPEN_FILES);
  const inodes = SharedFileTable.create(SHARED_INODE_FDS);
  const removals = SharedRemovalGate.create();
  return { files, inodes, removals, inodeTable: new SharedInodeLink(), buffers: { files: files.buffer, inodes: inodes.buffer, removals: removals.buffer } };
}

/** What another serving thread's filesystem is built with: the configuration's part, and the core's root and handle keying. */
export function threadFsOptions(cfg: Config, core: PassthroughFs): ThreadFsOptions {
  return {
    maxWrite: cfg.maxWrite, attrTimeoutMs: timeoutMs(cfg.cache), rootPath: core.procRootPath, ...core.handleKeying,
    plainXattrs: cfg.xattr && cfg.xattrmap === null && cfg.translateUid.length === 0 && cfg.translateGid.length === 0,
    readonly: cfg.readonly, translateUid: cfg.translateUid, translateGid: cfg.translateGid,
  };
}
