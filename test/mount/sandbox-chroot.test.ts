/**
 * The POSIX table, the smoke tests, the adversarial suite and the id tests again, every raw
 * server a worker that chroots itself into the share (`--supervise --sandbox chroot --seccomp
 * kill`, HANDLEFS_TEST_SANDBOX_MODE: test/helpers/mount.ts). Chrooted, the kernel's path of a
 * directory moved out of the share no longer tells inside from outside by itself; the adversarial
 * suite checks the proof that replaces it (src/fs/confinement.ts insideChroot).
 */
process.env.HANDLEFS_TEST_SANDBOX = 'kill';
process.env.HANDLEFS_TEST_SANDBOX_MODE = 'chroot';
await import('./posix.test.js');
await import('./smoke.test.js');
await import('./ids.test.js');
await import('../security/mount.test.js');
