/**
 * The POSIX table and the smoke tests again, every raw server run as a sandboxed worker under
 * seccomp kill (HANDLEFS_TEST_SANDBOX: test/helpers/mount.ts): a syscall missing from the
 * allow-list kills the worker and fails them.
 */
process.env.HANDLEFS_TEST_SANDBOX = 'kill';
await import('./posix.test.js');
await import('./smoke.test.js');
