/**
 * Mounts, read from /proc/self/mountinfo: never by stat(2) or mountpoint(1), which touch the mount
 * and hang on a FUSE server that stopped answering.
 */
import * as fs from 'node:fs';
import { run } from './run.js';

export interface MountInfo {
  /** the mount point, unescaped */
  path: string;
  /** major:minor of the mounted filesystem (for FUSE the minor is the connection: /sys/fs/fuse/connections/<minor>) */
  major: number;
  minor: number;
  fstype: string;
  /** the mount source (for handlefs: the shared directory) */
  source: string;
  /** per-mount and filesystem options together, as /proc/mounts shows them */
  options: string[];
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Every mount of this process's namespace, in mount order (a later one covers an earlier one). */
export function mounts(): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    // id parent major:minor root mountpoint mount-options [optional...] - fstype source super-options
    const a = line.slice(0, sep).split(' ');
    const [fstype, source, superOptions] = line.slice(sep + 3).split(' ');
    const [major, minor] = (a[2] ?? '').split(':').map(Number);
    const options = [...new Set([...(a[5] ?? '').split(','), ...(superOptions ?? '').split(',')])];
    out.push({ path: unescape(a[4] ?? ''), major: major ?? 0, minor: minor ?? 0, fstype: fstype ?? '', source: unescape(source ?? ''), options });
  }
  return out;
}

/** The topmost mount at `path` (an absolute, canonical path), or null. */
export function mountAt(path: string): MountInfo | null {
  return mounts().filter((m) => m.path === path).at(-1) ?? null;
}

/** The mount points at `dir` or below it (an absolute, canonical path): what a cleanup must leave none of. */
export function mountsUnder(dir: string): string[] {
  const below = dir.endsWith('/') ? dir : `${dir}/`;
  return mounts().filter((m) => m.path === dir || m.path.startsWith(below)).map((m) => m.path);
}

/**
 * Unmount `mnt` (a mount of ours), escalating: umount; then, for FUSE, abort the connection (a
 * server that stopped answering) and umount -l. Each step is bounded; returns whether it is gone.
 */
export async function forceUnmount(mnt: string): Promise<boolean> {
  if (!mountAt(mnt)) return true;
  // -c: no canonicalization, so umount(8) does not stat into the mount (which may hang)
  const r = await run('umount', ['-c', mnt], { timeoutMs: 5000 });
  if (r.status === 0 && !mountAt(mnt)) return true;
  const m = mountAt(mnt);
  if (m && m.fstype.startsWith('fuse')) {
    try {
      fs.writeFileSync(`/sys/fs/fuse/connections/${m.minor}/abort`, '1');
    } catch {
      /* fusectl not mounted or the connection already gone */
    }
  }
  await run('umount', ['-l', '-c', mnt], { timeoutMs: 5000 });
  return !mountAt(mnt);
}
