/**
 * Mounted fixture for the fuse-native frontend: orig/ + mnt/ in a temp dir, the server
 * (test/highlevel/server.mjs over dist/) in a child process, and a teardown that always unmounts
 * (fusermount -u; on a hang: abort the connection via /sys/fs/fuse/connections/<minor>/abort, then
 * umount -l) and kills its own child by pid, pass or fail.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SERVER = path.join(HERE, 'server.mjs');
export const DIST_MOUNT = path.join(HERE, '..', '..', 'dist', 'frontends', 'highlevel', 'mount.js');

export interface Mounted {
  dir: string;
  orig: string;
  mnt: string;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
}

export interface ServerOptions {
  maxPaths?: number;
  cache?: string;
  logLevel?: string;
}

/** Why mounted tests cannot run here, or null. */
export function skipReason(): string | null {
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse missing';
  if (process.getuid?.() !== 0) return 'needs root (libfuse2 mounts with mount(2) or a fusermount v2)';
  if (!fs.existsSync(DIST_MOUNT)) return 'dist/ not built: run `npx tsc -p tsconfig.json` first';
  return null;
}

/** The mount's "major:minor" from /proc/self/mountinfo (never stat the mount: it may hang). */
export function mountDev(mnt: string): string | null {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] === mnt) return f[2] ?? null;
  }
  return null;
}

export function isMounted(mnt: string): boolean {
  return mountDev(mnt) !== null;
}

export function sh(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export async function startServer(opts: ServerOptions = {}): Promise<Mounted> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hfs-hl-'));
  const orig = path.join(dir, 'orig');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(orig);
  fs.mkdirSync(mnt);
  const child = spawn(process.execPath, [SERVER, orig, mnt, JSON.stringify(opts)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const m: Mounted = { dir, orig, mnt, child, stdout: () => out, stderr: () => err };
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`server not ready in 15 s: ${err}`)), 15_000);
      const check = (): void => {
        if (out.includes('READY')) {
          clearTimeout(t);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      child.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`server exited ${code}: ${err}`));
      });
      check();
    });
  } catch (e) {
    await teardown(m);
    throw e;
  }
  return m;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/**
 * Stop the server the polite way (it unmounts and prints its counters), then make sure: unmount,
 * abort a hung connection, kill our child. Returns the counters line's JSON when there was one.
 */
export async function teardown(m: Mounted): Promise<Record<string, Record<string, number>> | null> {
  if (m.child.exitCode === null && m.child.signalCode === null) {
    m.child.kill('SIGTERM');
    await waitExit(m.child, 8000);
  }
  if (isMounted(m.mnt)) {
    const r = await sh('fusermount', ['-u', m.mnt], 3000);
    if (r.code !== 0 && isMounted(m.mnt)) {
      const dev = mountDev(m.mnt);
      const minor = dev?.split(':')[1];
      if (minor) {
        try {
          fs.writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
        } catch { /* connection already gone */ }
      }
      await sh('umount', ['-l', m.mnt], 3000);
    }
  }
  if (m.child.exitCode === null && m.child.signalCode === null) {
    m.child.kill('SIGKILL');
    await waitExit(m.child, 3000);
  }
  const line = m.stdout().split('\n').find((l) => l.startsWith('COUNTERS '));
  if (!isMounted(m.mnt)) fs.rmSync(m.dir, { recursive: true, force: true });
  return line ? JSON.parse(line.slice('COUNTERS '.length)) : null;
}
