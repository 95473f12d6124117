/**
 * Mounts, read from /proc/self/mountinfo: never by stat(2) or mountpoint(1), which touch the mount
 * and hang on a FUSE server that stopped answering.
 */
import * as fs from 'node:fs';
import { run } from './run.js';

export interface MountEntry {
  /** the mount point, unescaped */
  path: string;
  /** the device minor number: /sys/fs/fuse/connections/<minor> for a FUSE mount */
  minor: number;
  fstype: string;
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Every mount of this process's namespace, in mount order (a later one covers an earlier one). */
export function listMounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const a = line.slice(0, sep).split(' ');
    out.push({ path: unescape(a[4] ?? ''), minor: Number(a[2]?.split(':')[1]), fstype: line.slice(sep + 3).split(' ')[0] ?? '' });
  }
  return out;
}

/** The topmost mount at `path` (an absolute, canonical path), or null. */
export function mountAt(path: string): MountEntry | null {
  return listMounts().filter((m) => m.path === path).at(-1) ?? null;
}

/** The mount points at `dir` or below it (an absolute, canonical path): what a cleanup must leave none of. */
export function mountsUnder(dir: string): string[] {
  const below = dir.endsWith('/') ? dir : `${dir}/`;
  return listMounts().filter((m) => m.path === dir || m.path.startsWith(below)).map((m) => m.path);
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
