/**
 * When the VMM goes away: `handlefs virtiofsd` exits 0 as virtiofsd does, or with
 * `--keep-listening` serves the next VMM; either way it unmaps the guest's memory and closes every
 * fd the connection brought (memory, eventfds, the socket). Two guests in turn against one
 * back-end: the second sees what the first wrote, and the back-end holds the same fds and no guest
 * mapping after each.
 * Needs root and the guest's packages (scripts/setup); three short TCG boots.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bootGuest, guestMissing, handlefsBackend, startBackend, type RunningBackend } from '../helpers/guest.js';

const missing = guestMissing();
const skip = missing.length > 0;

const fds = (pid: number): string[] => fs.readdirSync(`/proc/${pid}/fd`).map((n) => {
  try {
    return `${n} ${fs.readlinkSync(`/proc/${pid}/fd/${n}`)}`;
  } catch {
    return n;
  }
}).sort();
/** The guest memory the back-end has mapped (QEMU's memory-backend-memfd). */
const guestMappings = (pid: number): string[] => fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.includes('memfd:mem'));

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(skip)(`the back-end when the VMM goes away${skip ? ` (skipped: needs ${missing.join(', ')})` : ''}`, () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    while (cleanup.length) await cleanup.pop()!();
  });

  function setup(extra: string[]): Promise<{ be: RunningBackend; share: string; socketPath: string }> {
    const dir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'handlefs-reconnect-')));
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const share = join(dir, 'share');
    fs.mkdirSync(share);
    const socketPath = join(dir, 'vhost.sock');
    return startBackend({ ...handlefsBackend, argv: (p) => [...handlefsBackend.argv(p), '--log-level=info', ...extra] }, { socketPath, sharedDir: share })
      .then((be) => {
        cleanup.push(() => be.stop());
        return { be, share, socketPath };
      });
  }

  it('without --keep-listening it exits 0 once the guest powered off, and removes its socket', async () => {
    const { be, share, socketPath } = await setup([]);
    const boot = await bootGuest({ socketPath, script: 'echo one > /mnt/a && cat /mnt/a', timeoutMs: 120_000 });
    expect(boot.status).toBe(0);
    expect(boot.lines).toContain('one');
    await until('the back-end to exit', () => be.exited() !== null);
    expect(be.exited()).toBe('code 0');
    expect(fs.readFileSync(join(share, 'a'), 'utf8')).toBe('one\n');
    expect(fs.existsSync(socketPath)).toBe(false);
  }, 180_000);

  it('with --keep-listening it serves the next VMM, and each disconnect leaves no fd and no guest mapping behind', async () => {
    const { be, share, socketPath } = await setup(['--keep-listening']);
    const idle = fds(be.pid);
    let mappedWhileServing = 0;
    const first = await bootGuest({
      socketPath, script: 'echo first > /mnt/a && sync && echo MARK && sleep 1', timeoutMs: 120_000,
      // while the guest runs, its memory is mapped: the check after the disconnect is not vacuous
      onLine: (l) => void (l === 'MARK' && (mappedWhileServing = guestMappings(be.pid).length)),
    });
    expect(first.status).toBe(0);
    expect(mappedWhileServing).toBeGreaterThan(0);
    await until('the first disconnect', () => /the VMM disconnected/.test(be.log()));
    await until('the first connection\'s fds to close', () => JSON.stringify(fds(be.pid)) === JSON.stringify(idle));
    expect(guestMappings(be.pid)).toEqual([]);
    const second = await bootGuest({ socketPath, script: 'cat /mnt/a && echo second > /mnt/b', timeoutMs: 120_000 });
    expect(second.status).toBe(0);
    expect(second.lines).toContain('first');
    await until('the second disconnect', () => (be.log().match(/the VMM disconnected/g) ?? []).length === 2);
    await until('the second connection\'s fds to close', () => JSON.stringify(fds(be.pid)) === JSON.stringify(idle));
    expect(guestMappings(be.pid)).toEqual([]);
    expect(be.exited()).toBeNull();
    expect(fs.readFileSync(join(share, 'b'), 'utf8')).toBe('second\n');
  }, 240_000);
});
