/** What a cache policy (--cache) means for timeouts and open flags, as virtiofsd defines them. */
import type { CachePolicy } from './options.js';
import { FOPEN_CACHE_DIR, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE } from './types.js';

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
