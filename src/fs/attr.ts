import type { Stat } from '../sys/stat.js';
import type { Attr } from './types.js';
import type { CachePolicy } from './options.js';
import { FOPEN_CACHE_DIR, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE } from './types.js';

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

/** Attribute/entry timeouts of a cache policy (virtiofsd: never 0, auto 1 s, metadata/always 1 day). */
export function timeoutMs(policy: CachePolicy): number {
  switch (policy) {
    case 'never': return 0;
    case 'auto': return 1000;
    case 'metadata':
    case 'always': return 86_400_000;
  }
}

/** FOPEN_* for files of a cache policy (virtiofsd: never/metadata bypass the page cache). */
export function fileOpenFlags(policy: CachePolicy): number {
  switch (policy) {
    case 'never':
    case 'metadata': return FOPEN_DIRECT_IO;
    case 'auto': return 0;
    case 'always': return FOPEN_KEEP_CACHE;
  }
}

export function dirOpenFlags(policy: CachePolicy): number {
  return policy === 'always' ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : 0;
}
