/**
 * The only loader of the native addon (native/build/Release/handlefs_sys.node). It finds the
 * package root by walking up from this file to package.json, so it works both from src/sys (vitest)
 * and from dist/sys (after tsc), and it lists every path it tried when loading fails.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeAddon } from './native.js';

const ADDON_RELATIVE = join('native', 'build', 'Release', 'handlefs_sys.node');

/** Candidate addon paths: one per ancestor directory holding a package.json, nearest first. */
function candidatePaths(): string[] {
  const out: string[] = [];
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) out.push(join(dir, ADDON_RELATIVE));
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return out;
}

export function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidatePaths()) {
    if (!existsSync(path)) {
      tried.push(`${path} (not found)`);
      continue;
    }
    try {
      return require(path) as NativeAddon;
    } catch (e) {
      tried.push(`${path} (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (tried.length === 0) tried.push(`no package.json above ${fileURLToPath(import.meta.url)}`);
  throw new Error(
    `cannot load the handlefs_sys addon; build it with \`npm run build:native\` (tried: ${tried.join('; ')})`,
  );
}
