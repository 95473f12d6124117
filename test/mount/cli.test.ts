/**
 * The CLI's exit codes and one-line messages: usage errors exit 2, set-up errors exit 1, each
 * with exactly one line on stderr, before anything is mounted.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/child.js';
import { CLI, runCli, sandboxed, underSandbox, withMount } from '../helpers/mount.js';
import { mountAt } from '../helpers/mounts.js';

const built = fs.existsSync(CLI);
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p)) ?? 'setpriv';
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l !== '');
  expect(lines, `stderr: ${stderr}`).toHaveLength(1);
  expect(lines[0]).toMatch(/^handlefs: /);
  return lines[0]!;
}

describe.skipIf(!built)('handlefs CLI errors', () => {
  let dir = '';
  let shared = '';
  let mnt = '';
  beforeAll(() => {
    dir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'handlefs-cli-')));
    shared = join(dir, 'shared');
    mnt = join(dir, 'mnt');
    fs.mkdirSync(shared);
    fs.mkdirSync(mnt);
    fs.writeFileSync(join(dir, 'file'), 'x');
    fs.mkdirSync(join(dir, 'full'));
    fs.writeFileSync(join(dir, 'full', 'f'), 'x');
    fs.mkdirSync(join(shared, 'sub'));
    fs.symlinkSync(join(shared, 'sub'), join(dir, 'link-into-shared'));
    fs.writeFileSync(join(dir, 'key'), Buffer.alloc(32, 7), { mode: 0o644 });
    fs.chmodSync(join(dir, 'key'), 0o644);
  });
  afterAll(() => {
    for (const p of [shared, mnt]) expect(mountAt(p)).toBeNull();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('rotate-key puts a new key in front and keeps the previous ones asked for', async () => {
    const d = fs.mkdtempSync(join(os.tmpdir(), 'handlefs-rotate-'));
    try {
      const key = join(d, 'key');
      const r1 = await runCli(['rotate-key', key]);
      expect(r1.status, r1.stderr).toBe(0);
      expect(fs.statSync(key).size).toBe(64); // created, then a new key in front of it
      const r2 = await runCli(['rotate-key', key, '--keep', '0']);
      expect(r2.stdout).toMatch(/a new key and 0 previous keys still accepted/);
      expect(fs.statSync(key).size).toBe(32);
      expect(fs.statSync(key).mode & 0o777).toBe(0o600);
      const r3 = await runCli(['rotate-key', key, '--keep', '9']);
      expect(r3.status).toBe(2);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  it('--help explains every option and exits 0', async () => {
    const r = await runCli(['--help']);
    expect(r.status).toBe(0);
    for (const o of ['--fd-budget', '--reopen', '--handle-key-file', '--cache', '--writeback', '--passthrough', '--readonly',
      '--allow-other', '--no-default-permissions', '--xattr', '--no-xattr', '--log-level', '--frontend', '--nonempty',
      '--max-write', '--stats-file', '--supervise', '--poll-us', 'SIGHUP', 'HANDLEFS_READY_FD']) {
      expect(r.stdout).toContain(o);
    }
  });

  const usage: Array<[string, () => string[], RegExp]> = [
    ['no arguments', () => [], /missing command/],
    ['unknown command', () => ['serve', shared, mnt], /unknown command 'serve'/],
    ['mount without paths', () => ['mount'], /missing SHARED and MOUNTPOINT/],
    ['mount without mountpoint', () => ['mount', shared], /missing MOUNTPOINT/],
    ['an extra argument', () => ['mount', shared, mnt, 'more'], /unexpected argument 'more'/],
    ['an unknown option', () => ['mount', shared, mnt, '--bogus'], /unknown option '--bogus'/],
    ['a negated value option', () => ['mount', shared, mnt, '--no-cache'], /unknown option '--no-cache'/],
    ['a missing option value', () => ['mount', shared, mnt, '--cache'], /option '--cache' needs a value/],
    ['a value for a flag', () => ['mount', shared, mnt, '--writeback=yes'], /option '--writeback' takes no value/],
    ['a bad --cache', () => ['mount', shared, mnt, '--cache', 'sometimes'], /--cache must be one of auto\|always\|metadata\|never/],
    ['a bad --reopen', () => ['mount', shared, mnt, '--reopen', 'magic'], /--reopen must be one of/],
    ['a bad --fd-budget', () => ['mount', shared, mnt, '--fd-budget', 'lots'], /--fd-budget must be a non-negative integer/],
    ['a tiny --fd-budget', () => ['mount', shared, mnt, '--fd-budget', '3'], /--fd-budget must be 'auto' or at least 16/],
    ['a bad --max-write', () => ['mount', shared, mnt, '--max-write', '1000'], /--max-write must be a multiple of 4096/],
    ['a huge --max-write', () => ['mount', shared, mnt, '--max-write', '2m'], /--max-write must be a multiple of 4096/],
    ['a bad --poll-us', () => ['mount', shared, mnt, '--poll-us', '1.5'], /--poll-us must be a non-negative integer, got '1.5'/],
    ['a huge --poll-us', () => ['mount', shared, mnt, '--poll-us', '100001'], /--poll-us must be 0\.\.100000, got 100001/],
    ['a bad --log-level', () => ['mount', shared, mnt, '--log-level', 'loud'], /--log-level must be one of/],
    ['a bad --frontend', () => ['mount', shared, mnt, '--frontend', 'nfs'], /--frontend must be one of raw\|fuse-native/],
    ['--passthrough with --writeback', () => ['mount', shared, mnt, '--passthrough', '--writeback'], /cannot be combined/],
    ['--passthrough with --supervise', () => ['mount', shared, mnt, '--passthrough', '--supervise'], /cannot be combined/],
  ];
  for (const [name, args, msg] of usage) {
    it(`usage error, exit 2: ${name}`, async () => {
      const r = await runCli(args());
      expect(r.status, r.stderr).toBe(2);
      expect(oneLine(r.stderr)).toMatch(msg);
      expect(r.stdout).toBe('');
    });
  }

  const setup: Array<[string, () => string[], RegExp]> = [
    ['the shared dir is missing', () => ['mount', join(dir, 'nope'), mnt], /shared directory .*nope does not exist$/],
    ['the shared dir is a file', () => ['mount', join(dir, 'file'), mnt], /shared directory .*file is not a directory/],
    ['the mountpoint is missing', () => ['mount', shared, join(dir, 'nomnt')], /mountpoint .*nomnt does not exist; create it first \(mkdir -p .*nomnt\)/],
    ['the mountpoint is a file', () => ['mount', shared, join(dir, 'file')], /mountpoint .*file is not a directory/],
    ['the mountpoint is not empty', () => ['mount', shared, join(dir, 'full')], /mountpoint .*full is not empty; empty it or pass --nonempty/],
    ['the mountpoint is inside the shared dir', () => ['mount', shared, join(shared, 'sub')], /is inside the shared directory/],
    ['the mountpoint is the shared dir', () => ['mount', shared, shared], /is inside the shared directory/],
    ['the mountpoint reaches into the shared dir through a symlink', () => ['mount', shared, join(dir, 'link-into-shared')], /is inside the shared directory/],
    ['the key file is readable by others', () => ['mount', shared, mnt, '--handle-key-file', join(dir, 'key')], /accessible by group or others .*chmod 600/],
  ];
  for (const [name, args, msg] of setup) {
    it(`set-up error, exit 1: ${name}`, async () => {
      const r = await runCli(args());
      expect(r.status, r.stderr).toBe(1);
      expect(oneLine(r.stderr)).toMatch(msg);
      expect(mountAt(mnt)).toBeNull();
    });
  }

  it.skipIf(!isRoot)('set-up error, exit 1: /dev/fuse is missing', async () => {
    // a mount namespace of its own whose /dev is an empty tmpfs
    const r = await run('unshare', ['-m', 'sh', '-c', 'mount --make-rprivate / && mount -t tmpfs tmpfs /dev && exec "$@"', 'sh',
      process.execPath, CLI, 'mount', shared, mnt], { timeoutMs: 15_000 });
    expect(r.status, r.stderr).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/^handlefs: \/dev\/fuse does not exist; load the fuse module/);
    expect(mountAt(mnt)).toBeNull();
  });

  it.skipIf(!isRoot)('set-up error, exit 1: not root and no fusermount3', async () => {
    // nobody, with a PATH that has no fusermount3; the dirs must be reachable for that user
    const d = fs.mkdtempSync(join(os.tmpdir(), 'handlefs-nobody-'));
    try {
      fs.mkdirSync(join(d, 's'));
      fs.mkdirSync(join(d, 'm'));
      fs.chmodSync(d, 0o755);
      const r = await run(SETPRIV, ['--reuid=65534', '--regid=65534', '--clear-groups', '--',
        process.execPath, CLI, 'mount', join(d, 's'), join(d, 'm')], { env: { PATH: '/nonexistent' }, timeoutMs: 15_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(oneLine(r.stderr)).toMatch(/not running as root and fusermount3 is not installed/);
      // with fusermount3 there, its refusal (here: /dev/fuse is 0600) comes back as one line
      const r2 = await run(SETPRIV, ['--reuid=65534', '--regid=65534', '--clear-groups', '--',
        process.execPath, CLI, 'mount', join(d, 's'), join(d, 'm')], { env: { PATH: '/usr/bin:/bin' }, timeoutMs: 15_000 });
      expect(r2.status, r2.stderr).toBe(1);
      expect(oneLine(r2.stderr)).toMatch(/fusermount3 could not mount .*\(exit 1\): fusermount3: /);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  // the filesystem is built after mounting (FUSE passthrough needs the device fd): when it fails,
  // the mount is undone; --reopen handle without CAP_DAC_READ_SEARCH makes the core refuse to start
  for (const extra of [[], ['--passthrough'], ['--supervise']]) {
    it.skipIf(!isRoot || !fs.existsSync('/dev/fuse'))(`set-up error after mounting, exit 1, nothing left mounted: ${['--reopen handle', ...extra].join(' ')}`, async () => {
      const r = await run(SETPRIV, ['--inh-caps=-dac_read_search', '--bounding-set=-dac_read_search', '--',
        process.execPath, CLI, 'mount', shared, mnt, '--reopen', 'handle', ...extra], { timeoutMs: 20_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(oneLine(r.stderr)).toMatch(/--reopen handle needs CAP_DAC_READ_SEARCH/);
      expect(mountAt(mnt)).toBeNull();
    });
  }

  it.skipIf(!isRoot || !fs.existsSync('/dev/fuse') || underSandbox)(`SIGHUP without --supervise is logged and ignored: the mount stays until SIGTERM${sandboxed('every server is supervised')}`, { timeout: 60_000 }, async () => {
    await withMount({ args: ['--log-level', 'info'], setup: (orig) => fs.writeFileSync(join(orig, 'a'), 'A') }, async (t) => {
      process.kill(t.pid, 'SIGHUP');
      for (let i = 0; i < 100 && !/received SIGHUP/.test(t.serverLog()); i++) await new Promise((r) => setTimeout(r, 50));
      expect(t.serverLog()).toMatch(/received SIGHUP: only a supervised server \(--supervise\) upgrades; still serving/);
      expect(t.exited()).toBeNull();
      expect(mountAt(t.mnt)).not.toBeNull();
      expect(fs.readFileSync(join(t.mnt, 'a'), 'utf8')).toBe('A');
      expect(await t.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      expect(mountAt(t.mnt)).toBeNull();
    });
  });

  it.skipIf(!isRoot || !fs.existsSync('/dev/fuse'))('--nonempty mounts over a non-empty directory', { timeout: 60_000 }, async () => {
    await withMount({ args: ['--nonempty'], setup: (orig) => fs.writeFileSync(join(orig, 'a'), 'A') }, async (t) => {
      expect(fs.readdirSync(t.mnt)).toEqual(['a']);
    });
    // the same fixture without --nonempty but a pre-filled mnt is covered above ("not empty")
  });
});
