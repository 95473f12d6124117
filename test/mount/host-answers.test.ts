/**
 * The host decides (issue 17's bugs found by outside suites): what a local filesystem answers for
 * out-of-range sizes, offsets and times, the mount answers too, on ext4 and on tmpfs; and a write
 * by a user without CAP_FSETID clears setuid/setgid as the kernel's killpriv rules say, with and
 * without FUSE passthrough, buffered and O_DIRECT.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, runSync } from '../helpers/child.js';
import { mountSkipReason, withMount } from '../helpers/mount.js';
import { forceUnmount, mountAt } from '../helpers/mounts.js';

const skip = mountSkipReason();

/**
 * Each operation on FILE (created empty, then the op), printed as one JSON object of errno names
 * ('OK' for success): what a client program sees.
 */
const OPS = `
import errno, json, os, sys
def name(f):
    try:
        f(); return 'OK'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
p = sys.argv[1]
src = p + '.src'
with open(src, 'wb') as f: f.write(b'abc')
out = {}
def fresh():
    fd = os.open(p, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644)
    return fd
for label, size in [('ftruncate 2^63-1', 2**63 - 1), ('ftruncate 2^53+1', 2**53 + 1), ('ftruncate 2^44', 2**44)]:
    fd = fresh(); out[label] = name(lambda: os.ftruncate(fd, size)); os.close(fd)
for label, off in [('copy to 2^63-2', 2**63 - 2), ('copy to 2^60', 2**60), ('copy to 2^53+8', 2**53 + 8)]:
    fd = fresh(); s = os.open(src, os.O_RDONLY)
    out[label] = name(lambda: os.copy_file_range(s, fd, 3, 0, off)); os.close(s); os.close(fd)
for label, off, ln in [('fallocate at 2^62', 2**62, 4096), ('fallocate at 2^53+4096', 2**53 + 4096, 4096), ('fallocate len 2^62', 0, 2**62)]:
    fd = fresh(); out[label] = name(lambda: os.posix_fallocate(fd, off, ln)); os.close(fd)
print(json.dumps(out))
`;

async function answers(file: string): Promise<Record<string, string>> {
  const r = await run('python3', ['-c', OPS, file], { timeoutMs: 20_000 });
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as Record<string, string>;
}

describe.skipIf(skip !== null)(`the host decides${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('out-of-range ftruncate, copy_file_range and fallocate answer as the host does (ext4 and tmpfs), and a far-future time is clamped, not EIO', async () => {
    // a tmpfs below the share, mounted before the server starts (a sandboxed server sees a later
    // mount only below a propagating share: test/mount/sandbox.test.ts): the same cases where the
    // host's answers differ
    let t = '';
    const setup = (orig: string): void => {
      t = path.join(orig, 'tmpfs');
      fs.mkdirSync(t);
      expect(runSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', t]).status).toBe(0);
    };
    await withMount({ setup }, async ({ orig, mnt }) => {
      try {
        for (const sub of ['', 'tmpfs']) {
          const host = await answers(path.join(orig, sub, 'host-f'));
          const client = await answers(path.join(mnt, sub, 'client-f'));
          expect({ fs: sub || 'share', ...client }).toEqual({ fs: sub || 'share', ...host });
        }
        // the cases differ between the two filesystems: the comparison above is not trivial
        const ext = await answers(path.join(orig, 'x'));
        const tmp = await answers(path.join(t, 'x'));
        expect(ext).not.toEqual(tmp);

        // touch -d with a year far beyond what 64-bit nanoseconds since 1970 can hold
        const when = 'Dec 31 23:59:59 UTC 2147483647';
        for (const sub of ['', 'tmpfs']) {
          fs.writeFileSync(path.join(orig, sub, 'h'), '');
          fs.writeFileSync(path.join(orig, sub, 'c'), '');
          const th = await run('touch', ['-d', when, path.join(orig, sub, 'h')], { timeoutMs: 10_000 });
          const tc = await run('touch', ['-d', when, path.join(mnt, sub, 'c')], { timeoutMs: 10_000 });
          expect({ status: tc.status, stderr: tc.stderr }).toEqual({ status: th.status, stderr: '' });
          const mh = fs.statSync(path.join(orig, sub, 'h'), { bigint: true }).mtimeNs;
          const mc = fs.statSync(path.join(orig, sub, 'c'), { bigint: true }).mtimeNs;
          expect(mc).toBe(mh);
          // and the client sees what the host stored
          expect(fs.statSync(path.join(mnt, sub, 'c'), { bigint: true }).mtimeNs).toBe(mh);
        }
      } finally {
        await forceUnmount(t);
      }
    }).finally(() => (t && mountAt(t) ? forceUnmount(t) : undefined));
  }, 90_000);

  for (const mode of ['raw', 'passthrough'] as const) {
    it(`a write by another user without CAP_FSETID clears setuid and setgid (${mode}; buffered and O_DIRECT)`, async () => {
      const args = ['--allow-other', ...(mode === 'passthrough' ? ['--passthrough'] : [])];
      await withMount({ args }, async ({ dir, orig, mnt }) => {
        // nobody must reach the mount point (the test's temp dir is 0700)
        fs.chmodSync(dir, 0o755);
        const write = (file: string, direct: boolean) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | (os.O_DIRECT if sys.argv[2] == '1' else 0))
buf = mmap.mmap(-1, 4096); buf.write(b'x' * 4096)
os.pwritev(fd, [buf], 0)
os.close(fd)
`, file, direct ? '1' : '0'], { timeoutMs: 10_000 });
        for (const direct of [false, true]) {
          const name = `suid-${direct ? 'direct' : 'buffered'}`;
          fs.writeFileSync(path.join(orig, name), 'hello');
          fs.chownSync(path.join(orig, name), 0, 0);
          // set through the mount, so the client's cached mode is the file's
          fs.chmodSync(path.join(mnt, name), 0o6777);
          expect(fs.statSync(path.join(orig, name)).mode & 0o7777).toBe(0o6777);
          const r = await write(path.join(mnt, name), direct);
          expect(r.stderr).toBe('');
          expect(r.status).toBe(0);
          expect({ name, mode: (fs.statSync(path.join(orig, name)).mode & 0o7777).toString(8) }).toEqual({ name, mode: '777' });
          // the host's own answer for the same write, for comparison
          fs.writeFileSync(path.join(orig, `${name}-host`), 'hello');
          fs.chmodSync(path.join(orig, `${name}-host`), 0o6777);
          expect((await write(path.join(orig, `${name}-host`), direct)).status).toBe(0);
          expect((fs.statSync(path.join(orig, `${name}-host`)).mode & 0o7777).toString(8)).toBe('777');
        }
      });
    }, 60_000);
  }
});
