/**
 * --passthrough: open regular files are registered with the kernel as FUSE backing files
 * (FUSE_DEV_IOC_BACKING_OPEN), so reads and writes go to the host file without the server.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { run } from '../helpers/child.js';
import { withMount, mountSkipReason } from '../helpers/mount.js';

const skip = mountSkipReason();

describe.skipIf(skip !== null)(`FUSE passthrough${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('reads, writes, appends and mmaps through backing files, byte-identical with the host', async () => {
    const data = randomBytes(3 << 20);
    await withMount({
      args: ['--passthrough', '--log-level', 'info'],
      setup: (orig) => fs.writeFileSync(path.join(orig, 'big'), data),
    }, async ({ orig, mnt, serverLog }) => {
      expect(serverLog()).toMatch(/PASSTHROUGH/); // negotiated
      expect(fs.readFileSync(path.join(mnt, 'big')).equals(data)).toBe(true);
      // written through the mount, seen on the host; append; read back through another process
      fs.writeFileSync(path.join(mnt, 'new'), 'through a backing file');
      fs.appendFileSync(path.join(mnt, 'new'), ', appended');
      expect(fs.readFileSync(path.join(orig, 'new'), 'utf8')).toBe('through a backing file, appended');
      const r = await run('python3', ['-c', `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
m[0:7] = b'MMAPPED'
m.flush(); m.close(); os.close(fd)
print(open(sys.argv[1], 'rb').read()[:7].decode())
`, path.join(mnt, 'big')], { timeoutMs: 20_000 });
      expect(r.stdout.trim()).toBe('MMAPPED');
      expect(fs.readFileSync(path.join(orig, 'big')).subarray(0, 7).toString()).toBe('MMAPPED');
      expect(fs.readFileSync(path.join(orig, 'big')).subarray(7).equals(data.subarray(7))).toBe(true);
      // metadata still goes through the server
      fs.renameSync(path.join(mnt, 'new'), path.join(mnt, 'renamed'));
      expect(fs.existsSync(path.join(orig, 'renamed'))).toBe(true);
      expect(fs.statSync(path.join(mnt, 'renamed')).size).toBe(fs.statSync(path.join(orig, 'renamed')).size);
    });
  }, 60_000);

  it('a file open twice at once shares one backing file: the second open, for writing, works (the kernel refuses a second backing file on an inode with EIO)', async () => {
    await withMount({
      args: ['--passthrough', '--stats-file', '{dir}/stats.json'],
      setup: (orig) => fs.writeFileSync(path.join(orig, 'f'), 'first\n'),
    }, async ({ orig, mnt }) => {
      // one process holds the file open for reading while another opens it for writing and
      // appends; then both read it back through their own opens
      const r = await run('python3', ['-c', `
import os, sys
p = sys.argv[1]
a = os.open(p, os.O_RDONLY)
b = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(b, b'second\\n')
c = os.open(p, os.O_RDWR)
print(os.pread(a, 100, 0).decode().replace('\\n', '|'), os.pread(c, 100, 0).decode().replace('\\n', '|'))
for fd in (a, b, c): os.close(fd)
`, path.join(mnt, 'f')], { timeoutMs: 20_000 });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('first|second| first|second|');
      expect(fs.readFileSync(path.join(orig, 'f'), 'utf8')).toBe('first\nsecond\n');
    });
  }, 60_000);
});
