/**
 * Where `handlefs virtiofsd` listens, run as a child process (no guest): a socket of its own at
 * --socket-path (owner-only, or group read/write with --socket-group), or a socket that already
 * listens, passed as --fd (as libvirt does). A VMM's first message, GET_FEATURES, is answered on
 * each; a stale socket file is replaced, anything else at the path is an error.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/mount.js';
import { sys } from '../../src/sys/syscalls.js';

const VERSION_1 = 1n << 32n;
const cleanup: Array<() => void> = [];
afterEach(() => {
  while (cleanup.length) cleanup.pop()!();
});

function scratch(): string {
  const d = fs.mkdtempSync(join(os.tmpdir(), 'hfs-vsock-'));
  fs.mkdirSync(join(d, 'share'));
  cleanup.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function server(args: string[], stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe']): { child: ChildProcess; err: () => string } {
  const child = spawn(process.execPath, [CLI, 'virtiofsd', ...args], { stdio });
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  cleanup.push(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
  return { child, err: () => err };
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** GET_FEATURES over a plain connection: the u64 of the reply. */
function getFeatures(path: string): Promise<bigint> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    let got = Buffer.alloc(0);
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('no reply to GET_FEATURES'));
    }, 10_000);
    s.on('error', reject);
    s.on('connect', () => s.write(Buffer.from([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])));
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < 20) return;
      clearTimeout(t);
      s.destroy();
      expect([got.readUInt32LE(0), got.readUInt32LE(4), got.readUInt32LE(8)]).toEqual([1, 0x5, 8]);
      resolve(got.readBigUInt64LE(12));
    });
  });
}

/** The exit code, or the name of the signal that ended the process. */
const exited = (c: ChildProcess): Promise<number | string | null> =>
  new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.exitCode ?? c.signalCode) : c.once('exit', (code, sig) => r(code ?? sig))));

describe('handlefs virtiofsd: where it listens', () => {
  it('--socket-path: owner-only by default; a stale socket file is replaced; the VMM gets its features', async () => {
    const d = scratch();
    const sock = join(d, 'vhost.sock');
    // a socket file a dead server left behind
    const stale = sys.unixListen(sock, 1);
    sys.close(stale);
    const s = server([`--socket-path=${sock}`, `--shared-dir=${join(d, 'share')}`]);
    await until('the socket', () => fs.existsSync(sock) && fs.statSync(sock).isSocket() && (fs.statSync(sock).mode & 0o777) === 0o600);
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect((await getFeatures(sock)) & VERSION_1).toBe(VERSION_1);
    s.child.kill('SIGTERM');
    expect(await exited(s.child), s.err()).toBe(0);
    expect(fs.existsSync(sock)).toBe(false);
  });

  it.skipIf(process.getuid?.() !== 0)('--socket-group: the socket is the group\'s, read/write (needs root to give it away)', async () => {
    const d = scratch();
    const sock = join(d, 'vhost.sock');
    const s = server([`--socket-path=${sock}`, `--shared-dir=${join(d, 'share')}`, '--socket-group=65534']);
    await until('the socket', () => fs.existsSync(sock) && (fs.statSync(sock).mode & 0o777) === 0o660);
    expect(fs.statSync(sock).gid).toBe(65534);
    expect((await getFeatures(sock)) & VERSION_1).toBe(VERSION_1);
    s.child.kill('SIGTERM');
    await exited(s.child);
  });

  it('--fd: a socket that already listens (libvirt\'s way) is served', async () => {
    const d = scratch();
    const sock = join(d, 'given.sock');
    const fd = sys.unixListen(sock, 1);
    cleanup.push(() => sys.close(fd));
    const s = server(['--fd=3', `--shared-dir=${join(d, 'share')}`], ['ignore', 'pipe', 'pipe', fd]);
    expect((await getFeatures(sock)) & VERSION_1).toBe(VERSION_1);
    s.child.kill('SIGTERM');
    expect(await exited(s.child), s.err()).toBe(0);
  });

  it('anything but a socket at --socket-path, or a missing shared dir: one line, exit 1', async () => {
    const d = scratch();
    fs.writeFileSync(join(d, 'file'), 'not a socket');
    const a = server([`--socket-path=${join(d, 'file')}`, `--shared-dir=${join(d, 'share')}`]);
    expect(await exited(a.child)).toBe(1);
    expect(a.err()).toMatch(/^handlefs: .*file exists and is not a socket; remove it or choose another --socket-path\n$/);
    expect(fs.readFileSync(join(d, 'file'), 'utf8')).toBe('not a socket');
    const b = server([`--socket-path=${join(d, 's')}`, `--shared-dir=${join(d, 'nope')}`]);
    expect(await exited(b.child)).toBe(1);
    expect(b.err()).toMatch(/^handlefs: shared directory .*nope does not exist\n$/);
  });
});
