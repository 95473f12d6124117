/**
 * --sandbox namespace --seccomp kill (the supervised worker in its own namespaces and root, with
 * fewer capabilities and a syscall allow-list), seen from outside through /proc and from inside
 * through a probe loaded into the worker's own process. The POSIX table and the smoke tests run
 * sandboxed in ./sandbox-suite.test.ts.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSync } from '../helpers/child.js';
import { mountSkipReason, runCli, withMount } from '../helpers/mount.js';

const skip = mountSkipReason();
const PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'sandbox-probe.mjs');
const SANDBOX = ['--supervise', '--sandbox', 'namespace', '--seccomp', 'kill'];

/** The children of a process (its threads' children included). */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    const s = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
    if (s) out.push(...s.split(' ').map(Number));
  }
  return out;
}

/** The worker's pid: the server's child is the launcher, whose child (pid 1 of its namespace) is the worker. */
function workerPid(server: number): number {
  const [launcher] = children(server);
  expect(launcher).toBeDefined();
  const [worker] = children(launcher!);
  expect(worker).toBeDefined();
  expect(fs.readFileSync(`/proc/${worker}/cmdline`, 'utf8')).toMatch(/worker\.js/);
  return worker!;
}

const status = (pid: number): Record<string, string> =>
  Object.fromEntries(fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').map((l) => l.split(':\t')).filter((kv) => kv.length === 2));

describe.skipIf(skip !== null)(`sandboxed worker${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('sees its own root, keeps only the capabilities it needs, and runs under the seccomp filter', async () => {
    await withMount({ args: SANDBOX, setup: (o) => fs.writeFileSync(path.join(o, 'f'), 'inside') }, async (t) => {
      expect(fs.readFileSync(path.join(t.mnt, 'f'), 'utf8')).toBe('inside');
      const w = workerPid(t.pid);
      const st = status(w);
      // chown, dac_override, dac_read_search, fowner, fsetid, mknod, setfcap
      const want = [0, 1, 2, 3, 4, 27, 31].reduce((m, c) => m | (1n << BigInt(c)), 0n);
      expect(BigInt(`0x${st.CapEff}`)).toBe(want);
      expect(BigInt(`0x${st.CapBnd}`)).toBe(want);
      expect(st.NoNewPrivs).toBe('1');
      expect(st.Seccomp).toBe('2');
      // its root: the share at its own path, none of the host's /etc, no mountpoint, no /dev/fuse
      const root = `/proc/${w}/root`;
      expect(fs.readFileSync(path.join(root, t.orig, 'f'), 'utf8')).toBe('inside');
      expect(fs.existsSync(path.join(root, 'etc/passwd'))).toBe(false);
      expect(fs.existsSync(path.join(root, t.mnt))).toBe(false);
      expect(fs.existsSync(path.join(root, 'dev/fuse'))).toBe(false);
      expect(fs.readlinkSync(`/proc/${w}/ns/mnt`)).not.toBe(fs.readlinkSync('/proc/self/ns/mnt'));
      expect(fs.readlinkSync(`/proc/${w}/ns/net`)).not.toBe(fs.readlinkSync('/proc/self/ns/net'));
      expect(fs.readlinkSync(`/proc/${w}/ns/pid`)).not.toBe(fs.readlinkSync('/proc/self/ns/pid'));
    });
  });

  it('cannot open a path outside the share by a direct syscall from its own process', async () => {
    const OUTSIDE = ['/etc/passwd', '/tmp/handlefs-sandbox-outside', '{here}/../../../../../../../../etc/passwd',
      `/proc/${process.pid}/root/etc/passwd`, '/proc/1/root/etc/passwd', '/dev/fuse'];
    fs.writeFileSync('/tmp/handlefs-sandbox-outside', 'outside');
    try {
      await withMount({
        args: SANDBOX,
        env: {
          NODE_OPTIONS: `--import=${PROBE}`,
          // the host's files, '..' up from a directory the worker sees, the host's root through
          // /proc, the FUSE device; and the worker's own module, which it must see
          HANDLEFS_PROBE_PATHS: [...OUTSIDE, '{here}/worker.js'].join('\n'),
        },
      }, async (t) => {
        const line = /sandbox-probe (.*)/.exec(t.serverLog());
        expect(line, t.serverLog()).not.toBeNull();
        const r = JSON.parse(line![1]!) as Record<string, string>;
        expect(r).toEqual({ ...Object.fromEntries(OUTSIDE.map((p) => [p, 'ENOENT'])), '{here}/worker.js': 'opened' });
        // the same paths from outside the sandbox: there they exist
        expect(fs.existsSync('/tmp/handlefs-sandbox-outside') && fs.existsSync(`/proc/${process.pid}/root/etc/passwd`)).toBe(true);
      });
    } finally {
      fs.rmSync('/tmp/handlefs-sandbox-outside', { force: true });
    }
  });

  it('sees a mount the host makes below a propagating share after start (the sandbox is a slave of the host)', async () => {
    // The share is made a shared mount here; a standard host's mounts already are (systemd), this
    // machine's are private, and a private mount propagates nothing to anyone.
    let share = '';
    let sub = '';
    const mounted = (p: string): boolean => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === p);
    try {
      await withMount({
        args: SANDBOX,
        setup: (o) => {
          share = fs.realpathSync(o);
          expect(runSync('mount', ['--bind', share, share]).status).toBe(0);
          expect(runSync('mount', ['--make-shared', share]).status).toBe(0);
          fs.writeFileSync(path.join(share, 'f'), 'served');
        },
      }, async (t) => {
        try {
          sub = path.join(share, 'later');
          fs.mkdirSync(sub);
          expect(fs.readFileSync(path.join(t.mnt, 'f'), 'utf8')).toBe('served');
          expect(runSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'hfs-later', sub]).status).toBe(0);
          fs.writeFileSync(path.join(sub, 'f'), 'on the later tmpfs');
          // a fresh name below the new mount: no cached negative entry stands in the way
          expect(fs.readFileSync(path.join(t.mnt, 'later', 'f'), 'utf8')).toBe('on the later tmpfs');
          expect(fs.statSync(path.join(t.mnt, 'later', 'f')).size).toBe(18);
        } finally {
          // before the fixture removes the share (the server holds fds below both: detached now)
          if (sub && mounted(sub)) runSync('umount', ['-l', sub]);
          runSync('umount', ['-l', share]);
        }
      });
    } finally {
      if (sub && mounted(sub)) runSync('umount', ['-l', sub]);
      if (share && mounted(share)) runSync('umount', ['-l', share]);
    }
  });

  it('--sandbox chroot (no namespaces): the worker chroots itself into the share once loaded, keeps only its capabilities, and cannot open outside', async () => {
    const OUTSIDE = ['/etc/passwd', '/tmp/handlefs-sandbox-outside', '{here}/worker.js', '/../../etc/passwd',
      `/proc/${process.pid}/root/etc/passwd`, '/proc/1/root/etc/passwd', '/dev/fuse'];
    fs.writeFileSync('/tmp/handlefs-sandbox-outside', 'outside');
    try {
      await withMount({
        args: ['--supervise', '--sandbox', 'chroot', '--seccomp', 'kill'],
        setup: (o) => fs.writeFileSync(path.join(o, 'f'), 'inside'),
        env: { NODE_OPTIONS: `--import=${PROBE}`, HANDLEFS_PROBE_WHEN: 'chrooted', HANDLEFS_PROBE_PATHS: [...OUTSIDE, '/f'].join('\n') },
      }, async (t) => {
        // served as ever, from inside the chroot
        expect(fs.readFileSync(path.join(t.mnt, 'f'), 'utf8')).toBe('inside');
        fs.writeFileSync(path.join(t.mnt, 'g'), 'written');
        expect(fs.readFileSync(path.join(t.orig, 'g'), 'utf8')).toBe('written');
        // no pid namespace: the launcher execs the worker itself, the server's child
        const [w] = children(t.pid);
        expect(fs.readFileSync(`/proc/${w}/cmdline`, 'utf8')).toMatch(/worker\.js/);
        const st = status(w!);
        // the same set as with namespaces: sys_chroot was dropped after use
        const want = [0, 1, 2, 3, 4, 27, 31].reduce((m, c) => m | (1n << BigInt(c)), 0n);
        expect(BigInt(`0x${st.CapEff}`)).toBe(want);
        expect(st.NoNewPrivs).toBe('1');
        expect(st.Seccomp).toBe('2');
        expect(fs.readlinkSync(`/proc/${w}/root`)).toBe(fs.realpathSync(t.orig));
        expect(fs.readlinkSync(`/proc/${w}/ns/mnt`)).toBe(fs.readlinkSync('/proc/self/ns/mnt'));
        let line: RegExpExecArray | null = null;
        for (let i = 0; i < 100 && !(line = /sandbox-probe (.*)/.exec(t.serverLog())); i++) await new Promise((r) => setTimeout(r, 50));
        expect(line, t.serverLog()).not.toBeNull();
        const r = JSON.parse(line![1]!) as Record<string, string>;
        expect(r).toEqual({ ...Object.fromEntries(OUTSIDE.map((p) => [p, 'ENOENT'])), '/f': 'opened' });
      });
    } finally {
      fs.rmSync('/tmp/handlefs-sandbox-outside', { force: true });
    }
  });

  it('refuses the options without --supervise, chroot with files outside the share, and bad --modcaps', async () => {
    for (const [args, msg] of [
      [['--sandbox', 'namespace'], /need --supervise/],
      [['--supervise', '--sandbox', 'chroot', '--stats-file', '/tmp/s.json'], /--sandbox chroot cannot write --stats-file or --state-file/],
      [['--supervise', '--seccomp', 'strict'], /--seccomp must be one of kill\|log\|none/],
      [['--supervise', '--modcaps', '+nosuchcap'], /--modcaps items/],
    ] as const) {
      const r = await runCli(['mount', '/tmp', '/nonexistent-mnt', ...args]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
  });
});
