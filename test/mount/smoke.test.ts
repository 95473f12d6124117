/**
 * Plumbing of the /dev/fuse frontend through the real CLI: mount, use, unmount; SIGTERM and an
 * external umount both end the server with status 0 and leave nothing mounted.
 */
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { run, runClient } from '../helpers/child.js';
import { mountSkipReason, withMount } from '../helpers/mount.js';
import { mountAt, mounts } from '../helpers/mounts.js';
import { uringParam } from '../helpers/uring.js';

const skip = mountSkipReason();

describe.skipIf(skip !== null)(`devfuse smoke${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('mounts, stats and lists the root, creates and reads a file, unmounts', { timeout: 60_000 }, async () => {
    let mnt = '';
    await withMount({ setup: (orig) => fs.writeFileSync(join(orig, 'hello.txt'), 'hi\n') }, async (t) => {
      mnt = t.mnt;
      const m = mountAt(t.mnt);
      expect(m?.fstype).toBe('fuse.handlefs');
      const st = await fsp.stat(t.mnt);
      expect(st.isDirectory()).toBe(true);
      expect(await fsp.readdir(t.mnt)).toEqual(['hello.txt']);
      expect(await fsp.readFile(join(t.mnt, 'hello.txt'), 'utf8')).toBe('hi\n');
      await fsp.writeFile(join(t.mnt, 'new.txt'), 'written through fuse');
      expect(fs.readFileSync(join(t.orig, 'new.txt'), 'utf8')).toBe('written through fuse');
      expect((await fsp.readdir(t.mnt)).sort()).toEqual(['hello.txt', 'new.txt']);
      // a client in another process sees the same
      const r = await runClient('cat "$1/new.txt" && ls "$1"', [t.mnt]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe('written through fuse' + 'hello.txt\nnew.txt\n');
    });
    expect(mountAt(mnt)).toBeNull();
  });

  it('the mount line in /proc/mounts names the shared dir and carries the mount options', { timeout: 60_000 }, async () => {
    await withMount({}, async (t) => {
      const { source, fstype, options } = mountAt(t.mnt)!;
      expect(source).toBe(t.orig);
      expect(fstype).toBe('fuse.handlefs');
      expect(options).toEqual(expect.arrayContaining(['nosuid', 'nodev', 'user_id=0', 'group_id=0']));
      expect(options).not.toContain('allow_other');
      // only the mounting user (root) reaches it: the kernel's own mode check is left out
      expect(options).not.toContain('default_permissions');
    });
  });

  it('who gets in: without --allow-other nobody but root (the kernel refuses others); with it, the kernel checks modes (default_permissions)', { timeout: 60_000 }, async () => {
    const setup = (o: string): void => {
      fs.writeFileSync(join(o, 'pub'), 'public\n', { mode: 0o644 });
      fs.writeFileSync(join(o, 'secret'), 'SECRET\n', { mode: 0o600 });
      fs.chmodSync(join(o, 'pub'), 0o644);
      fs.chmodSync(join(o, 'secret'), 0o600);
    };
    const asNobody = (...cmd: string[]) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...cmd]);
    const open = (p: string): void => {
      for (let d = dirname(p); d !== '/'; d = dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o005);
    };
    await withMount({ setup }, async (t) => {
      open(t.mnt);
      expect(await fsp.readFile(join(t.mnt, 'secret'), 'utf8')).toBe('SECRET\n');
      for (const f of ['pub', 'secret']) {
        const r = await asNobody('cat', join(t.mnt, f));
        expect(r.status).not.toBe(0);
        expect(r.stdout).toBe('');
      }
    });
    await withMount({ args: ['--allow-other'], setup }, async (t) => {
      open(t.mnt);
      expect(mountAt(t.mnt)!.options).toEqual(expect.arrayContaining(['allow_other', 'default_permissions']));
      expect((await asNobody('cat', join(t.mnt, 'pub'))).stdout).toBe('public\n');
      const r = await asNobody('cat', join(t.mnt, 'secret'));
      expect(r.status).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/Permission denied/);
      expect((await asNobody('sh', '-c', `echo x >> ${join(t.mnt, 'pub')}`)).status).not.toBe(0);
      expect(fs.readFileSync(join(t.orig, 'pub'), 'utf8')).toBe('public\n');
    });
  });

  it('--allow-other, --no-default-permissions and --readonly reach the mount options', { timeout: 60_000 }, async () => {
    await withMount({ args: ['--allow-other', '--no-default-permissions', '--readonly'], setup: (o) => fs.writeFileSync(join(o, 'f'), 'x') }, async (t) => {
      const options = mountAt(t.mnt)!.options;
      expect(options).toEqual(expect.arrayContaining(['ro', 'allow_other']));
      expect(options).not.toContain('default_permissions');
      expect(await fsp.readFile(join(t.mnt, 'f'), 'utf8')).toBe('x');
      await expect(fsp.writeFile(join(t.mnt, 'g'), 'y')).rejects.toMatchObject({ code: 'EROFS' });
    });
  });

  it('SIGTERM unmounts and exits 0', { timeout: 60_000 }, async () => {
    await withMount({ args: ['--log-level', 'info'] }, async (t) => {
      await fsp.writeFile(join(t.mnt, 'f'), 'x');
      const st = await t.stop('SIGTERM');
      expect(st).toEqual({ code: 0, signal: null });
      expect(mountAt(t.mnt)).toBeNull();
      // run again as a sandboxed worker by ./sandbox-suite.test.ts, and with serving threads
      // (HANDLEFS_TEST_THREADS), both of which the mounted line names
      const threads = process.env.HANDLEFS_TEST_THREADS;
      const ring = threads && process.env.HANDLEFS_TEST_IO_URING === 'on' && uringParam() !== null ? ', io_uring' : '';
      const what = process.env.HANDLEFS_TEST_SANDBOX ? /\(raw, supervised, worker pid \d+\)/
        : new RegExp(`\\(raw, fd budget \\d+, reopen by (handle|path)${threads ? `, ${threads} threads` : ''}${ring}\\)`);
      expect(t.serverLog()).toMatch(new RegExp(`mounted .* on .* ${what.source}`));
      expect(t.serverLog()).toMatch(/received SIGTERM: unmounting/);
    });
  });

  // What a stop does to a busy mount depends on the machine: with fusectl mounted (systemd mounts
  // it when the fuse module loads) the server aborts the connection, as libfuse's exit ends it;
  // without it the mount is detached and its open files are served until they are closed.
  const abortable = mounts().some((m) => m.fstype === 'fusectl' && m.path === '/sys/fs/fuse/connections');
  it(`SIGINT on a busy mount detaches it, ${abortable ? 'aborts the connection (fusectl is mounted)' : 'serves the open file until it is closed (no fusectl)'}, then exits 0`, { timeout: 60_000 }, async () => {
    await withMount({ args: ['--log-level', 'info'] }, async (t) => {
      const fh = await fsp.open(join(t.mnt, 'held'), 'w+');
      try {
        process.kill(t.pid, 'SIGINT');
        for (let i = 0; i < 100 && mountAt(t.mnt); i++) await sleep(50);
        expect(mountAt(t.mnt)).toBeNull(); // detached from the namespace
        if (abortable) {
          await expect(fh.write('not served')).rejects.toMatchObject({ code: 'ENOTCONN' });
        } else {
          await fh.write('still served');
          expect(t.exited()).toBeNull();
          expect(fs.readFileSync(join(t.orig, 'held'), 'utf8')).toBe('still served');
        }
      } finally {
        await fh.close().catch((e: { code?: string }) => {
          // the aborted connection fails the close as well
          if (!abortable || e.code !== 'ENOTCONN') throw e;
        });
      }
      // the server's log goes with a wrong exit status: what ended it is in there
      expect(await t.stop('SIGCONT', 10_000), t.serverLog()).toEqual({ code: 0, signal: null });
      if (!abortable) expect(t.serverLog()).toMatch(/busy: detached it lazily/);
      else expect(fs.readFileSync(join(t.orig, 'held'), 'utf8')).toBe('');
    });
  });

  it('a second signal on a busy mount stops at once', { timeout: 60_000 }, async () => {
    await withMount({}, async (t) => {
      const fh = await fsp.open(join(t.mnt, 'held'), 'w');
      try {
        process.kill(t.pid, 'SIGTERM');
        for (let i = 0; i < 100 && mountAt(t.mnt); i++) await sleep(50);
        const st = await t.stop('SIGTERM', 10_000);
        // either the connection was aborted (exit 0) or, without fusectl, the server stopped at once (exit 1)
        expect(st.code === 0 || st.code === 1).toBe(true);
        await expect(fh.write('x')).rejects.toMatchObject({ code: 'ENOTCONN' });
      } finally {
        await fh.close().catch(() => {});
      }
    });
  });

  it('an external umount ends the server with 0', { timeout: 60_000 }, async () => {
    await withMount({}, async (t) => {
      await fsp.readdir(t.mnt);
      const r = await run('umount', [t.mnt], { timeoutMs: 10_000 });
      expect(r.status).toBe(0);
      const st = await t.stop('SIGCONT', 10_000); // SIGCONT: harmless, just wait for the exit
      expect(st).toEqual({ code: 0, signal: null });
    });
  });

  it('the server survives its stderr reader going away (EPIPE)', { timeout: 60_000 }, async () => {
    await withMount({ args: ['--log-level', 'debug'] }, async (t) => {
      // debug traces every request to stderr; close our end of the pipe and keep using the mount
      t.closeOutput();
      for (let i = 0; i < 20; i++) {
        await fsp.writeFile(join(t.mnt, `f${i}`), 'x');
        await fsp.readdir(t.mnt);
      }
      expect(t.exited()).toBeNull();
      expect(fs.readdirSync(t.orig)).toHaveLength(20);
    });
  });
});
