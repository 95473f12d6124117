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
        // The mounted suite again, every raw server a sandboxed worker under seccomp kill
        // (HANDLEFS_TEST_SANDBOX: test/helpers/mount.ts): a syscall missing from the allow-list
        // kills the worker and fails its tests. After the plain run, not beside it: mounts on two
        // cores interfere.
        extends: true,
        test: {
          name: 'mount-sandboxed',
          include: ['test/mount/**/*.test.ts', 'test/security/**/*.test.ts', 'test/stress/**/*.test.ts'],
          exclude: ['test/mount/sandbox.test.ts', 'test/mount/sandbox-chroot.test.ts'],
          env: { HANDLEFS_TEST_SANDBOX: 'kill' },
          fileParallelism: false,
          testTimeout: 120_000,
          sequence: { groupOrder: 1 },
        },
      },
      {
        // The mounted suite again, every raw unsupervised server with two serving threads
        // (HANDLEFS_TEST_THREADS: test/helpers/mount.ts), after the sandboxed run.
        extends: true,
        test: {
          name: 'mount-threads',
          include: ['test/mount/**/*.test.ts', 'test/security/**/*.test.ts', 'test/stress/**/*.test.ts'],
          exclude: ['test/mount/sandbox.test.ts', 'test/mount/sandbox-chroot.test.ts', 'test/mount/dev-clone.test.ts'],
          env: { HANDLEFS_TEST_THREADS: '2' },
          fileParallelism: false,
          testTimeout: 120_000,
          sequence: { groupOrder: 2 },
        },
      },
      {
        // The mounted suite again over FUSE over io_uring, with two serving threads
        // (HANDLEFS_TEST_IO_URING: test/helpers/mount.ts turns the kernel's switch on around each
        // server's start and puts it back), after the threads' run.
        extends: true,
        test: {
          name: 'mount-uring',
          include: ['test/mount/**/*.test.ts', 'test/security/**/*.test.ts', 'test/stress/**/*.test.ts'],
          exclude: ['test/mount/sandbox.test.ts', 'test/mount/sandbox-chroot.test.ts', 'test/mount/dev-clone.test.ts'],
          env: { HANDLEFS_TEST_THREADS: '2', HANDLEFS_TEST_IO_URING: 'on' },
          fileParallelism: false,
          testTimeout: 120_000,
          sequence: { groupOrder: 3 },
        },
      },
      {
        extends: true,
        // a QEMU guest per file (root, qemu, a cloud kernel; scripts/setup installs them); after
        // the mounted suites: a TCG guest takes both cores
        test: {
          name: 'guest', include: ['test/guest/**/*.test.ts'], fileParallelism: false, testTimeout: 300_000, hookTimeout: 300_000,
          sequence: { groupOrder: 4 },
        },
      },
    ],
  },
});
