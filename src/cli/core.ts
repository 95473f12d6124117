/**
 * What every way of serving builds first: the sealing keys and the filesystem core in the
 * decorators the options ask for (--translate-uid/-gid, --readonly).
 */
import type { Logger } from 'pino';
import { passthroughOptions, type Config, type SealingKeys } from '../config.js';
import type { FileSystem } from '../fs/filesystem.js';
import type { PassthroughOptions } from '../fs/options.js';
import type { PassthroughFs } from '../fs/passthrough.js';

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
