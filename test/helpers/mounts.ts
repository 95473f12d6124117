/**
 * Where mounts go (a fresh temp dir with orig/ and mnt/), what is mounted where, from /proc/self/mountinfo (read, never stat the mount point: a hung FUSE
 * server would hang the stat), and unmounting with escalation.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';

export { mounts, mountAt, mountsUnder, forceUnmount, type MountInfo } from '../../tools/lib/mounts.js';

/** A fresh temp dir (its real path) holding orig/ (to share) and mnt/ (to mount on). */
export function mountDirs(prefix: string): { dir: string; orig: string; mnt: string } {
  const dir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), prefix)));
  const orig = join(dir, 'orig');
  const mnt = join(dir, 'mnt');
  fs.mkdirSync(orig);
  fs.mkdirSync(mnt);
  return { dir, orig, mnt };
}
