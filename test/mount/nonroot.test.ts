/**
 * Mounting without root: the server runs as nobody and mounts through fusermount3 (setuid root),
 * which sends the /dev/fuse fd back over _FUSE_COMMFD with SCM_RIGHTS. fusermount3 opens /dev/fuse
 * with the caller's rights, so /dev/fuse must be usable by others (0666, as on most systems); this
 * sandbox ships it 0600, so the test widens it for its duration and restores the mode afterwards.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, run, mountAt, forceUnmount } from '../helpers/mount.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const haveTools = fs.existsSync('/usr/bin/fusermount3') && fs.existsSync('/usr/bin/setpriv') && fs.existsSync(CLI);
const asNobody = (cmd: string[]): string[] => ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...cmd];

describe.skipIf(!isRoot || !haveTools)('mount without root (needs root to set up the unprivileged user, fusermount3, setpriv, dist/)', () => {
  it('a server running as nobody mounts through fusermount3, serves, and unmounts', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'handlefs-nonroot-'));
    fs.chmodSync(dir, 0o755);
    const orig = path.join(dir, 'orig');
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(orig);
    fs.mkdirSync(mnt);
    fs.writeFileSync(path.join(orig, 'f'), 'from the host');
    fs.chownSync(orig, NOBODY, NOBODY);
    fs.chownSync(mnt, NOBODY, NOBODY);
    fs.chownSync(path.join(orig, 'f'), NOBODY, NOBODY);
    const mode0 = fs.statSync('/dev/fuse').mode & 0o777;
    fs.chmodSync('/dev/fuse', 0o666);
    const [cmd, ...args] = asNobody([process.execPath, CLI, 'mount', orig, mnt]);
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { ...process.env, HANDLEFS_READY_FD: '3' } });
    let log = '';
    child.stderr!.on('data', (d) => (log += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`not ready: ${log}`)), 15_000);
        (child.stdio[3] as NodeJS.ReadableStream).on('data', () => {
          clearTimeout(t);
          resolve();
        });
        void exited.then((c) => reject(new Error(`server exited ${c}: ${log}`)));
      });
      const m = mountAt(mnt);
      expect(m).not.toBeNull();
      const line = fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt)!;
      expect(line).toContain(`user_id=${NOBODY}`);
      // without allow_other only the mounting user may use the mount: the client is nobody too
      const r = await run('setpriv', asNobody(['sh', '-c', `cat "$1/f" && echo written > "$1/g" && cat "$1/g"`, 'x', mnt]).slice(1), { timeoutMs: 10_000 });
      expect(r.stdout).toBe('from the hostwritten\n');
      expect(fs.readFileSync(path.join(orig, 'g'), 'utf8')).toBe('written\n');
      expect(fs.statSync(path.join(orig, 'g')).uid).toBe(NOBODY);
      const u = await run('setpriv', asNobody(['fusermount3', '-u', mnt]).slice(1), { timeoutMs: 10_000 });
      expect(u.status).toBe(0);
      expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))])).toBe(0);
    } finally {
      fs.chmodSync('/dev/fuse', mode0);
      if (mountAt(mnt)) await forceUnmount(mnt);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
