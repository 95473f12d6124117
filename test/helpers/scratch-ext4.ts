/**
 * A small, fresh ext4 (mkfs defaults: with a journal) on a loop device, for tests whose premise is
 * a host filesystem behaviour that the machine's own filesystem may not have. The one in use:
 * ext4 hands a freed inode number to the next new file at once, but only with a journal; without
 * one (this VM's root filesystem) it avoids numbers freed in the last 5 to 305 seconds, so a test
 * that waits for reuse there passes or fails by the clock.
 *
 * Needs root, mkfs.ext4 and a free loop device (CI has all three); scratchExt4Unavailable() says
 * why not otherwise. The image lives under /var/tmp and is removed by cleanup(), which also
 * unmounts (lazily if busy).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runSync } from './child.js';
import { mountAt } from './mounts.js';

export interface ScratchExt4 {
  dir: string;
  cleanup: () => void;
}

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = runSync(cmd, args, { timeoutMs: 30_000 });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

export function scratchExt4Unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (mount -o loop)';
  if (!run('mkfs.ext4', ['-V']).ok) return 'mkfs.ext4 is missing';
  if (!run('losetup', ['-f']).ok) return 'no free loop device';
  return null;
}

export function scratchExt4(sizeMiB = 64): ScratchExt4 {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir(), 'handlefs-ext4-')));
  const img = path.join(base, 'fs.img');
  const dir = path.join(base, 'mnt');
  fs.mkdirSync(dir);
  fs.writeFileSync(img, '');
  fs.truncateSync(img, sizeMiB << 20);
  const mk = run('mkfs.ext4', ['-q', '-F', img]);
  const mnt = mk.ok ? run('mount', ['-o', 'loop', img, dir]) : mk;
  const cleanup = (): void => {
    if (mountAt(dir) && !run('umount', [dir]).ok) run('umount', ['-l', dir]);
    fs.rmSync(base, { recursive: true, force: true });
  };
  if (!mnt.ok) {
    cleanup();
    throw new Error(`could not make a scratch ext4: ${mnt.out}`);
  }
  return { dir, cleanup };
}
