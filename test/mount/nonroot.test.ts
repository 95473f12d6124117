/**
 * Mounting without root: the server runs as nobody and mounts through fusermount3 (setuid root),
 * which sends the /dev/fuse fd back over _FUSE_COMMFD with SCM_RIGHTS. fusermount3 opens /dev/fuse
 * with the caller's rights, so /dev/fuse must be usable by others (0666, as on most systems); this
 * sandbox ships it 0600, so the test widens it for its duration and restores the mode afterwards.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../helpers/child.js';
import { CLI, sandboxed, underSandbox, withMount } from '../helpers/mount.js';
import { mountAt } from '../helpers/mounts.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const haveTools = fs.existsSync('/usr/bin/fusermount3') && fs.existsSync('/usr/bin/setpriv') && fs.existsSync(CLI);
const asNobody = (cmd: string[]): string[] => ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...cmd];

describe.skipIf(!isRoot || !haveTools || underSandbox)(`mount without root (needs root to set up the unprivileged user, fusermount3, setpriv, dist/)${sandboxed('the sandbox needs root')}`, () => {
  it('a server running as nobody mounts through fusermount3, serves, and unmounts', async () => {
    const setup = (orig: string): void => {
      const dir = path.dirname(orig);
      fs.chmodSync(dir, 0o755);
      fs.writeFileSync(path.join(orig, 'f'), 'from the host');
      for (const p of [orig, path.join(dir, 'mnt'), path.join(orig, 'f')]) fs.chownSync(p, NOBODY, NOBODY);
    };
    const mode0 = fs.statSync('/dev/fuse').mode & 0o777;
    fs.chmodSync('/dev/fuse', 0o666);
    try {
      await withMount({ setup, wrap: asNobody([]) }, async ({ orig, mnt, stop }) => {
        const m = mountAt(mnt);
        expect(m).not.toBeNull();
        expect(m!.options).toContain(`user_id=${NOBODY}`);
        // without allow_other only the mounting user may use the mount: the client is nobody too
        const r = await run('setpriv', asNobody(['sh', '-c', `cat "$1/f" && echo written > "$1/g" && cat "$1/g"`, 'x', mnt]).slice(1), { timeoutMs: 10_000 });
        expect(r.stdout).toBe('from the hostwritten\n');
        expect(fs.readFileSync(path.join(orig, 'g'), 'utf8')).toBe('written\n');
        expect(fs.statSync(path.join(orig, 'g')).uid).toBe(NOBODY);
        const u = await run('setpriv', asNobody(['fusermount3', '-u', mnt]).slice(1), { timeoutMs: 10_000 });
        expect(u.status).toBe(0);
        // SIGCONT is harmless: stop() just waits (10 s) for the exit fusermount3's unmount causes
        expect(await stop('SIGCONT', 10_000)).toEqual({ code: 0, signal: null });
      });
    } finally {
      fs.chmodSync('/dev/fuse', mode0);
    }
  }, 60_000);
});
