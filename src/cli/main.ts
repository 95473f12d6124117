#!/usr/bin/env node
/**
 * The `handlefs` executable (package.json bin). Everything lives in run.ts; this file only turns
 * the result into an exit code. main() resolves once the server has unmounted and released what it
 * holds, so exiting then leaves nothing behind.
 */
import { main } from './run.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    try {
      process.stderr.write(`handlefs: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    } catch {
      /* stderr closed */
    }
    process.exit(1);
  },
);
