/**
 * virtiofsd's --xattrmap, --security-label, --announce-submounts and --preserve-noatime through a
 * real mount: clients are getfattr/setfattr and python3 processes with timeouts, every effect is
 * checked on the host side of the share (orig/).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run, type RunResult } from '../helpers/child.js';
import { mountSkipReason, runCli, withMount } from '../helpers/mount.js';
import { mountAt } from '../helpers/mounts.js';

const skip = mountSkipReason();
const T = 10_000;

const client = (cmd: string, ...args: string[]): Promise<RunResult> => run(cmd, args, { timeoutMs: T });
const py = (script: string, ...args: string[]): Promise<RunResult> => client('python3', '-c', script, ...args);

/** host xattrs of a path as name=value lines (getfattr on the host, no mount involved) */
function hostXattrs(p: string): string[] {
  const out = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '-', '-e', 'text', p], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes('=')).sort();
}

/** orig/f with one host xattr, for a mount's setup */
const fileWith = (name: string) => (orig: string): void => {
  fs.writeFileSync(join(orig, 'f'), 'x');
  execFileSync('setfattr', ['-n', name, '-v', 'h', join(orig, 'f')]);
};

/** the names a client lists on a path through the mount */
async function clientNames(p: string): Promise<string[]> {
  const r = await py('import os,sys; print("\\n".join(sorted(os.listxattr(sys.argv[1], follow_symlinks=False))))', p);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

describe.skipIf(skip)('--xattrmap through the mount', () => {
  it("':map::user.virtiofs.:': a client's trusted.*/security.* land under user.virtiofs.* on the host and come back under their names", async () => {
    await withMount({ setup: fileWith('user.hostonly'), args: ['--xattrmap', ':map::user.virtiofs.:'] }, async ({ orig, mnt }) => {
      const f = join(mnt, 'f');
      for (const [n, v] of [['trusted.overlay.opaque', 'y'], ['security.test', 'label'], ['user.mine', 'm']]) {
        const r = await client('setfattr', '-n', n, '-v', v, f);
        expect(r.status, r.stderr).toBe(0);
      }
      expect(hostXattrs(join(orig, 'f'))).toEqual([
        'user.hostonly="h"', 'user.virtiofs.security.test="label"', 'user.virtiofs.trusted.overlay.opaque="y"', 'user.virtiofs.user.mine="m"',
      ]);
      const g = await client('getfattr', '--only-values', '-n', 'trusted.overlay.opaque', f);
      expect(g.stdout).toBe('y');
      // the client lists its own names only: neither the host's user.hostonly nor the prefixed names
      expect(await clientNames(f)).toEqual(['security.test', 'trusted.overlay.opaque', 'user.mine']);
      expect((await client('setfattr', '-x', 'trusted.overlay.opaque', f)).status).toBe(0);
      expect(hostXattrs(join(orig, 'f'))).not.toContain('user.virtiofs.trusted.overlay.opaque="y"');
    });
  }, 60_000);

  it("'/map/trusted./user.virtiofs./': the mapped space itself is refused to the client (a bad rule)", async () => {
    await withMount({ setup: fileWith('trusted.hostonly'), args: ['--xattrmap', '/map/trusted./user.virtiofs./'] }, async ({ orig, mnt }) => {
      const f = join(mnt, 'f');
      const r = await py(`import os,sys
try:
    os.setxattr(sys.argv[1], 'user.virtiofs.trusted.sneak', b'x')
    print('set')
except OSError as e:
    print(e.errno)`, f);
      expect(r.stdout.trim()).toBe('1'); // EPERM
      expect((await client('setfattr', '-n', 'trusted.a', '-v', 'A', f)).status).toBe(0);
      expect((await client('setfattr', '-n', 'user.plain', '-v', 'P', f)).status).toBe(0);
      expect(hostXattrs(join(orig, 'f'))).toEqual(['trusted.hostonly="h"', 'user.plain="P"', 'user.virtiofs.trusted.a="A"']);
      // the host's unprefixed trusted.* is hidden, the client's comes back under its name
      expect(await clientNames(f)).toEqual(['trusted.a', 'user.plain']);
    });
  }, 60_000);

  // the host kernel does not know the mapped name; the client's kernel removes it (REMOVEXATTR of
  // security.capability, which must reach the mapped name) before the write
  it('a remapped security.capability is dropped by a write, as the real one would be', async () => {
    const setup = (orig: string): void => fs.writeFileSync(join(orig, 'f'), 'x');
    await withMount({ setup, args: ['--xattrmap', ':map::user.virtiofs.:'] }, async ({ orig, mnt }) => {
      // VFS_CAP_REVISION_2 with CAP_NET_BIND_SERVICE permitted
      const r = await py(`import os,struct,sys
os.setxattr(sys.argv[1], 'security.capability', struct.pack('<5I', 0x02000000, 1 << 10, 0, 0, 0))
with open(sys.argv[1], 'a') as f: f.write('more')`, join(mnt, 'f'));
      expect(r.status, r.stderr).toBe(0);
      expect(fs.readFileSync(join(orig, 'f'), 'utf8')).toBe('xmore');
      expect(hostXattrs(join(orig, 'f')).filter((l) => l.includes('capability'))).toEqual([]);
    });
  }, 60_000);

  it('a malformed map is a one-line usage error (exit 2), as is a map without xattrs', async () => {
    for (const args of [['--xattrmap', ':prefix:client:hi'], ['--xattrmap', ':map::x.: :ok:all:::'], ['--xattrmap', ':ok:all:::', '--no-xattr']]) {
      const r = await runCli(['mount', '/tmp', '/mnt', ...args]);
      expect(r.status).toBe(2);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(r.stderr).toMatch(/^handlefs: .*xattr/);
    }
  });
});

describe.skipIf(skip)('--security-label through the mount', () => {
  it('FUSE_SECURITY_CTX is negotiated and every kind of create carries its (here empty) context without harm', async () => {
    await withMount({ args: ['--security-label', '--log-level', 'info'] }, async ({ orig, mnt, serverLog }) => {
      expect(serverLog()).toMatch(/"flags":"[^"]*SECURITY_CTX/);
      const r = await py(`import os,sys
m=sys.argv[1]
open(os.path.join(m,'f'),'w').write('data')
os.mkdir(os.path.join(m,'d'))
os.mkfifo(os.path.join(m,'p'))
os.symlink('target', os.path.join(m,'l'))
fd=os.open(m, os.O_TMPFILE|os.O_RDWR, 0o600); os.write(fd, b'x'); os.close(fd)
print(sorted(os.listdir(m)), os.readlink(os.path.join(m,'l')))`, mnt);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe("['d', 'f', 'l', 'p'] target");
      expect(fs.readFileSync(join(orig, 'f'), 'utf8')).toBe('data');
      // no LSM labels new files on this host: the kernel sends a context header with no entry
      for (const n of ['f', 'd', 'p']) expect(hostXattrs(join(orig, n)).filter((l) => l.startsWith('security.'))).toEqual([]);
    });
  }, 60_000);
});

describe.skipIf(skip)('--announce-submounts through the mount', () => {
  /** orig/sub is a tmpfs for the duration of fn (unmounted in a finally, also when fn throws) */
  async function withSubmount(args: string[], fn: (mnt: string, log: () => string) => Promise<void>): Promise<void> {
    let subPath = '';
    const setup = (orig: string): void => {
      subPath = join(orig, 'sub');
      fs.mkdirSync(subPath);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'hfs-submount', subPath]);
      fs.writeFileSync(join(subPath, 'file'), 'on tmpfs');
    };
    try {
      await withMount({ setup, args: [...args, '--log-level', 'info'] }, async ({ mnt, serverLog }) => {
        try {
          await fn(mnt, serverLog);
        } finally {
          // lazily: the server still holds fds on it; before the fixture removes the temp dir
          execFileSync('umount', ['-l', subPath]);
        }
      });
    } finally {
      if (subPath && mountAt(subPath)) execFileSync('umount', ['-l', subPath]);
    }
  }
  const devs = async (mnt: string): Promise<number[]> => {
    const r = await py('import os,sys; print(*[os.stat(os.path.join(sys.argv[1], p)).st_dev for p in ("", "sub", "sub/file")])', mnt);
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.trim().split(' ').map(Number);
  };

  it('a /dev/fuse client does not offer FUSE_SUBMOUNTS: the server says so and serves the submount in one st_dev', async () => {
    await withSubmount(['--announce-submounts'], async (mnt, log) => {
      expect(fs.readFileSync(join(mnt, 'sub', 'file'), 'utf8')).toBe('on tmpfs');
      const negotiated = /"flags":"([^"]*)"[^\n]*negotiated/.exec(log())?.[1] ?? '';
      expect(negotiated).not.toBe('');
      const [root, sub, file] = await devs(mnt);
      if (negotiated.split(/[|, ]/).includes('SUBMOUNTS')) {
        // a client that supports submounts (virtio-fs) gives the submount its own st_dev
        expect(sub).not.toBe(root);
        expect(file).toBe(sub);
      } else {
        expect(log()).toMatch(/does not support submounts/);
        expect([sub, file]).toEqual([root, root]);
      }
    });
  }, 60_000);

  it('without the option nothing is announced or warned', async () => {
    await withSubmount([], async (mnt, log) => {
      const [root, sub, file] = await devs(mnt);
      expect([sub, file]).toEqual([root, root]);
      expect(log()).not.toMatch(/submounts/);
    });
  }, 60_000);
});

describe.skipIf(skip)('--preserve-noatime through the mount', () => {
  const OLD = new Date('2001-09-09T01:46:40Z');
  /** a client reads orig/f through the mount with O_NOATIME; the host atime afterwards (ms) */
  async function noatimeRead(args: string[]): Promise<number> {
    let file = '';
    let atime = 0;
    const setup = (orig: string): void => {
      file = join(orig, 'f');
      fs.writeFileSync(file, 'data');
      fs.utimesSync(file, OLD, OLD);
    };
    await withMount({ setup, args: ['--cache', 'never', ...args] }, async ({ mnt }) => {
      const r = await py(`import os,sys
fd=os.open(os.path.join(sys.argv[1],'f'), os.O_RDONLY|os.O_NOATIME); print(os.read(fd, 10).decode()); os.close(fd)`, mnt);
      expect(r.stdout.trim(), r.stderr).toBe('data');
      atime = fs.statSync(file).atimeMs;
    });
    return atime;
  }

  it('the client O_NOATIME is dropped by default (host atime moves) and kept with --preserve-noatime', async () => {
    expect(await noatimeRead([])).toBeGreaterThan(OLD.getTime());
    expect(await noatimeRead(['--preserve-noatime'])).toBe(OLD.getTime());
  }, 60_000);
});
