// Mounted tests of the fuse-native frontend's own server (test/highlevel/server.mjs). They are part of
// the root config's `mount` project (npx vitest run --project mount); to run them alone:
//   npx tsc -p tsconfig.json && npx vitest run --config test/highlevel/vitest.config.ts
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/highlevel/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
