/**
 * Where things are. tools/ and its build dist-tools/ sit at the same depth below the repository,
 * so these paths hold both for the TypeScript sources (vitest) and for the compiled tools.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** the server's command line, built by scripts/setup */
export const CLI = join(REPO, 'dist', 'cli', 'main.js');
/** the compiled tools (tools/X.ts -> dist-tools/X.js), built by scripts/setup */
export const TOOLS_OUT = join(REPO, 'dist-tools');
