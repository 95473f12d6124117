/**
 * Mounted fixture for the fuse-native frontend: orig/ + mnt/ in a temp dir, the server
 * (test/highlevel/server.mjs over dist/) in a child process, and a teardown that always unmounts
 * (forceUnmount: umount; on a hang, abort the connection, then umount -l) and kills its own child
 * by pid, pass or fail.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killPid, start, waitExit, type Started } from '../helpers/child.js';
import { mountSkipReason } from '../helpers/mount.js';
import { forceUnmount, mountAt, mountDirs } from '../helpers/mounts.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SERVER = path.join(HERE, 'server.mjs');
export const DIST_MOUNT = path.join(HERE, '..', '..', 'dist', 'frontends', 'highlevel', 'mount.js');

export interface Mounted extends Started {
  dir: string;
  orig: string;
  mnt: string;
}

export interface ServerOptions {
  maxPaths?: number;
  cache?: string;
  logLevel?: string;
}

/** Why mounted tests cannot run here, or null. */
export function skipReason(): string | null {
  return mountSkipReason() ?? (fs.existsSync(DIST_MOUNT) ? null : 'dist/ not built: run `npx tsc -p tsconfig.json` first');
}

export async function startServer(opts: ServerOptions = {}): Promise<Mounted> {
  const { dir, orig, mnt } = mountDirs('hfs-hl-');
  const m: Mounted = { dir, orig, mnt, ...start(process.execPath, [SERVER, orig, mnt, JSON.stringify(opts)]) };
  const { child } = m;
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`server not ready in 15 s: ${m.stderr()}`)), 15_000);
      const check = (): void => {
        if (m.stdout().includes('READY')) {
          clearTimeout(t);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      child.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`server exited ${code}: ${m.stderr()}`));
      });
      check();
    });
  } catch (e) {
    await teardown(m);
    throw e;
  }
  return m;
}

/**
 * Stop the server the polite way (it unmounts and prints its counters), then make sure: unmount,
 * abort a hung connection, kill our child. Returns the counters line's JSON when there was one.
 */
export async function teardown(m: Mounted): Promise<Record<string, Record<string, number>> | null> {
  if (m.child.exitCode === null && m.child.signalCode === null) {
    killPid(m.child.pid!, 'SIGTERM');
    await waitExit(m.child, 8000);
  }
  await forceUnmount(m.mnt);
  await m.kill();
  const line = m.stdout().split('\n').find((l) => l.startsWith('COUNTERS '));
  if (!mountAt(m.mnt)) fs.rmSync(m.dir, { recursive: true, force: true });
  return line ? JSON.parse(line.slice('COUNTERS '.length)) : null;
}
