import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts', 'test/sys/**/*.test.ts', 'test/fs/**/*.test.ts', 'test/posix/**/*.test.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'mount',
          include: ['test/mount/**/*.test.ts', 'test/highlevel/**/*.test.ts', 'test/security/**/*.test.ts', 'test/stress/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
        },
      },
      {
        extends: true,
        // a QEMU guest per file (root, qemu, a cloud kernel; scripts/setup installs them)
        test: { name: 'guest', include: ['test/guest/**/*.test.ts'], fileParallelism: false, testTimeout: 300_000, hookTimeout: 300_000 },
      },
    ],
  },
});
