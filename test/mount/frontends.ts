/**
 * The frontends the mounted suite runs against, and what each one is known not to pass.
 *
 * Every mounted case runs once per frontend through the real CLI (`--frontend raw|fuse-native`).
 * A case that a frontend cannot pass is listed here with the reason; it is registered with
 * `it.fails` and its name carries "[fuse-native: <reason>]", so it shows in every run, and it
 * turns red the day it starts passing (then remove it from the list). Nothing is skipped silently.
 * HANDLEFS_TEST_PLAIN=1 runs the listed cases as ordinary tests, to see how each fails today.
 */
import { it, type TestContext } from 'vitest';

export type Frontend = 'raw' | 'fuse-native';
export const FRONTENDS: readonly Frontend[] = ['raw', 'fuse-native'];

/** CLI arguments selecting the frontend. */
export function frontendArgs(f: Frontend): string[] {
  return ['--frontend', f];
}

/** Reasons, from the limits of fuse-native 2.2.6 / libfuse2 (src/frontends/highlevel/adapter.ts, mount.ts). */
const MS = 'millisecond times (fuse-native carries times as ms)';
const INO = "inode numbers are libfuse's own (no use_ino: fuse-native's stat is 32-bit)";
const FLAGS = 'no rename flags (EINVAL)';
const LOCKS = 'no locks: flock/fcntl locks stay local to the client kernel (not seen by the host)';
const UTF8 = 'no non-UTF-8 names or symlink targets (paths are JS strings)';
const HARD_REMOVE = 'I/O on an unlinked or renamed-over open file is ENOENT (hard_remove)';
const NO_OP = (op: string): string => `no ${op} (libfuse2 high-level API has none)`;

/** case name -> why the frontend cannot pass it. */
export const KNOWN_FAILURES: Record<Frontend, Record<string, string>> = {
  raw: {},
  'fuse-native': {
    // the POSIX case table (test/posix/cases.ts)
    'writes across and beyond 4 GiB: sparse, SEEK_DATA and SEEK_HOLE': NO_OP('lseek SEEK_DATA/SEEK_HOLE'),
    'posix_fallocate allocates; FALLOC_FL_PUNCH_HOLE frees and reads as zeros': NO_OP('fallocate'),
    'unlink while open: I/O through the fd continues, fstat nlink 0': HARD_REMOVE,
    'rename over an open file: the old fd still reads the old data': HARD_REMOVE,
    'names with non-UTF-8 bytes: create, list, stat, rename, unlink': UTF8,
    'symlink targets pointing outside are stored and returned verbatim': UTF8,
    'RENAME_NOREPLACE: EEXIST over an existing name, moves otherwise': FLAGS,
    'RENAME_EXCHANGE swaps two names (a file and a directory)': FLAGS,
    'hard links share the inode and count nlink': INO,
    'utimensat with nanoseconds, UTIME_OMIT and UTIME_NOW': MS,
    'lutimes changes the symlink, not its target': MS,
    'O_TMPFILE: an unnamed file, usable, then linked into the directory': NO_OP('O_TMPFILE'),
    // the passthrough extras (test/mount/passthrough.test.ts)
    'flock and fcntl locks held by a host process contend with a client on the mount': LOCKS,
    "stat shows the host's inode number (64-bit, bigint compare)": INO,
    'stat shows nanosecond times (atime, mtime, ctime as on the host)': MS,
  },
};

/** Why `f` cannot pass `name`, or undefined. */
export function knownFailure(f: Frontend, name: string): string | undefined {
  return KNOWN_FAILURES[f][name];
}

type Fn = (ctx: TestContext) => Promise<void>;

/** `it` for a case on a frontend: expected to fail (visibly, with the reason) when listed. */
export function itOn(f: Frontend, name: string, opts: { timeout: number }, fn: Fn): void {
  const reason = knownFailure(f, name);
  // HANDLEFS_TEST_PLAIN=1 runs listed cases as plain tests, to see how they fail today
  if (reason === undefined || process.env.HANDLEFS_TEST_PLAIN === '1') it(name, opts, fn);
  else it.fails(`${name} [${f}: ${reason}]`, opts, fn);
}
