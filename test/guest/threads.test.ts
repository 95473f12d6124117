/**
 * `handlefs virtiofsd --threads 2` under QEMU with vhost-user-fs-pci num-request-queues=2: QEMU
 * sets up and starts the three queues (the second request queue on its serving thread, with the
 * guest's real memory), the guest mounts the share and works through it, and the host agrees.
 * Debian 12's guest kernel (6.1) puts every request on the first request queue (its driver spreads
 * them over the queues from Linux 6.11 on); the stats file shows where each request went.
 * Needs root and the guest's packages (scripts/setup); one short TCG boot.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bootGuest, guestMissing, handlefsBackend, startBackend } from '../helpers/guest.js';

const missing = guestMissing();
const skip = missing.length > 0;

describe.skipIf(skip)(`a guest with two request queues, each served by its own thread${skip ? ` (skipped: needs ${missing.join(', ')})` : ''}`, () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()!();
  });

  it('QEMU starts all three queues, the guest writes and reads files, the host sees them', async () => {
    const dir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'handlefs-gthreads-')));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const share = join(dir, 'share');
    fs.mkdirSync(share);
    fs.writeFileSync(join(share, 'from-host'), 'host bytes\n');
    const socketPath = join(dir, 'vhost.sock');
    const stats = join(dir, 'stats.json');
    const be = await startBackend(
      { ...handlefsBackend, argv: (p) => [...handlefsBackend.argv(p), '--threads=2', `--stats-file=${stats}`, '--log-level=info'] },
      { socketPath, sharedDir: share },
    );
    cleanup.push(() => be.stop());
    const script = [
      'cat /mnt/from-host',
      'mkdir /mnt/d && i=0 && while [ $i -lt 50 ]; do echo "file $i" > /mnt/d/f$i; i=$((i+1)); done',
      'ls /mnt/d | wc -l',
      'cat /mnt/d/f7',
      'rm /mnt/d/f0 && mv /mnt/d/f1 /mnt/d/moved && sync',
    ].join(' && ');
    const boot = await bootGuest({ socketPath, script, requestQueues: 2, timeoutMs: 150_000 });
    expect(boot.status, boot.console.slice(-2000)).toBe(0);
    expect(boot.lines).toEqual(['host bytes', '50', 'file 7']);
    const names = fs.readdirSync(join(share, 'd')).sort();
    expect(names).toHaveLength(49);
    expect(names).toContain('moved');
    expect(names).not.toContain('f0');
    expect(fs.readFileSync(join(share, 'd', 'f7'), 'utf8')).toBe('file 7\n');
    // the back-end ran two serving threads and QEMU started the queue of the second
    expect(be.log()).toMatch(/serving request queues with 2 threads/);
    expect(be.log()).toMatch(/"queue":2,.*serving a request queue on its own thread/);
    const st = JSON.parse(fs.readFileSync(stats, 'utf8')) as { threads: number; queueThreads: Array<{ queue: number; requests: number; served: number; handedOver: number }>; brokenQueues: number; requests: number };
    expect(st.threads).toBe(2);
    expect(st.brokenQueues).toBe(0);
    const q2 = st.queueThreads.find((t) => t.queue === 2)!;
    expect(q2.served + q2.handedOver).toBe(q2.requests);
    // every request the guest sent reached one of the queues and was answered
    expect(st.requests).toBeGreaterThan(100);
  }, 200_000);
});
