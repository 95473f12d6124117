import type { FileSystem } from './filesystem.js';
import { IdMapFs } from './idmap-fs.js';
import { buildIdMap } from './idmap.js';
import { ReadOnlyFs } from './read-only.js';

/** The decorators the options ask for around the core: id translation inside, read-only outside. */
export function decorate(core: FileSystem, o: { readonly: boolean; translateUid: readonly string[]; translateGid: readonly string[] }): FileSystem {
  let fs = core;
  if (o.translateUid.length > 0 || o.translateGid.length > 0) fs = new IdMapFs(fs, buildIdMap(o.translateUid), buildIdMap(o.translateGid));
  return o.readonly ? new ReadOnlyFs(fs) : fs;
}
