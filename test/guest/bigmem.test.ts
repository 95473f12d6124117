/**
 * A guest with 8 GiB of RAM: QEMU hands over a region of about 4.5 GiB above 4 GiB, more than one
 * ArrayBuffer holds in Node 20; the back-end maps it in pieces and serves the guest's writes and
 * reads through buffers anywhere in it.
 * Needs root and the guest's packages (scripts/setup); one TCG boot (guest memory is a sparse memfd).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { guestMissing, handlefsBackend, withBackend } from '../helpers/guest.js';

const missing = guestMissing();
const skip = missing.length > 0;

describe.skipIf(skip)(`a guest with more than 4 GiB of RAM${skip ? ` (skipped: needs ${missing.join(', ')})` : ''}`, () => {
  it('is served: 64 MiB written and read back by the guest, the bytes on the host', async () => {
    const dir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'handlefs-bigmem-')));
    try {
      fs.mkdirSync(join(dir, 'share'));
      const r = await withBackend(handlefsBackend, { socketPath: join(dir, 'vhost.sock'), sharedDir: join(dir, 'share') }, {
        memMiB: 8192,
        timeoutMs: 120_000,
        // the guest fills its page cache across its RAM: buffers land in the high region's pieces
        script: 'dd if=/dev/urandom of=/mnt/big bs=1M count=64 2>/dev/null && sync && echo 3 > /proc/sys/vm/drop_caches && sha256sum /mnt/big',
      });
      expect(r.status).toBe(0);
      const sum = r.lines.find((l) => l.endsWith('/mnt/big'))?.split(' ')[0];
      const host = await import('node:crypto').then((c) => c.createHash('sha256').update(fs.readFileSync(join(dir, 'share', 'big'))).digest('hex'));
      expect(fs.statSync(join(dir, 'share', 'big')).size).toBe(64 << 20);
      expect(sum).toBe(host);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
