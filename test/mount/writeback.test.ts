/**
 * --writeback (FUSE_WRITEBACK_CACHE): the kernel caches writes and sends them later; the server
 * opens write-only files read-write and leaves O_APPEND to the kernel. Data must still land exactly.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { run } from '../helpers/child.js';
import { withMount, mountSkipReason } from '../helpers/mount.js';

const skip = mountSkipReason();

describe.skipIf(skip !== null)(`writeback cache${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('appends, overwrites and bulk writes reach the host byte for byte', async () => {
    await withMount({ args: ['--writeback', '--log-level', 'info'] }, async ({ orig, mnt, serverLog }) => {
      expect(serverLog()).toMatch(/WRITEBACK_CACHE/);
      const r = await run('python3', ['-c', `
import os, sys
p = sys.argv[1]
fd = os.open(p + '/a', os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
os.write(fd, b'one;'); os.write(fd, b'two;'); os.close(fd)
fd = os.open(p + '/a', os.O_WRONLY | os.O_APPEND); os.write(fd, b'three;'); os.close(fd)
fd = os.open(p + '/a', os.O_WRONLY); os.pwrite(fd, b'ONE', 0); os.fsync(fd); os.close(fd)
print(open(p + '/a').read())
`, mnt], { timeoutMs: 20_000 });
      expect(r.stdout.trim()).toBe('ONE;two;three;');
      const data = randomBytes(5 << 20);
      fs.writeFileSync(path.join(mnt, 'bulk'), data);
      await run('sync', [], { timeoutMs: 20_000 });
      expect(fs.readFileSync(path.join(orig, 'a'), 'utf8')).toBe('ONE;two;three;');
      expect(fs.readFileSync(path.join(orig, 'bulk')).equals(data)).toBe(true);
    });
  }, 60_000);
});
