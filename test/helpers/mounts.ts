/**
 * Where mounts go (a fresh temp dir with orig/ and mnt/), what is mounted where, from /proc/self/mountinfo (read, never stat the mount point: a hung FUSE
 * server would hang the stat), and unmounting with escalation.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { run } from './child.js';

export interface MountInfo {
  /** the mount point */
  path: string;
  /** major:minor of the mounted filesystem (the FUSE connection number is the minor) */
  major: number;
  minor: number;
  fstype: string;
  /** the mount source (for handlefs: the shared directory) */
  source: string;
  /** per-mount and filesystem options together, as /proc/mounts shows them */
  options: string[];
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Every mount of this process's namespace, in mount order. */
export function mounts(): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    // id parent major:minor root mountpoint mount-options [optional...] - fstype source super-options
    const a = line.slice(0, sep).split(' ');
    const [fstype, source, superOptions] = line.slice(sep + 3).split(' ');
    const [major, minor] = a[2]!.split(':').map(Number);
    const options = [...new Set([...a[5]!.split(','), ...(superOptions ?? '').split(',')])];
    out.push({ path: unescape(a[4]!), major: major!, minor: minor!, fstype: fstype!, source: unescape(source ?? ''), options });
  }
  return out;
}

/** The topmost mount at `path`, or null. */
export function mountAt(path: string): MountInfo | null {
  return mounts().filter((m) => m.path === path).pop() ?? null;
}

/**
 * Unmount whatever is mounted at `mnt`, escalating: umount; for a FUSE mount that does not go,
 * abort its connection (/sys/fs/fuse/connections/N/abort), then umount -l.
 */
export async function forceUnmount(mnt: string): Promise<void> {
  if (!mountAt(mnt)) return;
  // -c: no canonicalization, so umount(8) does not stat into the mount (which may hang)
  const r = await run('umount', ['-c', mnt], { timeoutMs: 5000 });
  if (r.status === 0 && !mountAt(mnt)) return;
  const m = mountAt(mnt);
  if (m && m.fstype.startsWith('fuse')) {
    try {
      fs.writeFileSync(`/sys/fs/fuse/connections/${m.minor}/abort`, '1');
    } catch {
      /* fusectl not mounted or connection already gone */
    }
  }
  await run('umount', ['-l', '-c', mnt], { timeoutMs: 5000 });
}

/** A fresh temp dir (its real path) holding orig/ (to share) and mnt/ (to mount on). */
export function mountDirs(prefix: string): { dir: string; orig: string; mnt: string } {
  const dir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), prefix)));
  const orig = join(dir, 'orig');
  const mnt = join(dir, 'mnt');
  fs.mkdirSync(orig);
  fs.mkdirSync(mnt);
  return { dir, orig, mnt };
}
