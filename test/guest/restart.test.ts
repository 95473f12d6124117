/**
 * Restart under a running guest (`handlefs virtiofsd --supervise`, and with the worker sandboxed
 * under `--seccomp kill`): while the guest loops over
 * writes and reads, the back-end is upgraded (SIGHUP: a new worker takes the connection) and then
 * its worker is SIGKILLed (the supervisor starts a successor). The guest's mount survives both:
 * its script runs to the end, every file it wrote without an error is on the host byte for byte,
 * at most the requests in flight at the crash failed (EIO), and a file handle it kept from before
 * opens the same file afterwards.
 * Needs root and the guest's packages (scripts/setup); one TCG boot.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootGuest, guestMissing, handlefsBackend, startBackend, type BootResult, type RunningBackend } from '../helpers/guest.js';

const missing = guestMissing();
const skip = missing.length > 0;
const ROUNDS = 200;
const UPGRADE_AT = 40;
const KILL_AT = 110;
const data = (i: number): string => `payload-${i}-${'x'.repeat(i % 97)}-end`;

/** The supervisor's worker: the descendant running vhost-worker.js (a sandboxed one is the launcher's child). */
function workerOf(pid: number, depth = 0): number | null {
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number)) {
      try {
        // the sandbox launcher's command line names the worker too: the deepest match is Node
        const below = depth < 2 ? workerOf(c, depth + 1) : null;
        if (below) return below;
        if (fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('vhost-worker.js')) return c;
      } catch {
        /* gone */
      }
    }
  }
  return null;
}

const status = (pid: number): Record<string, string> =>
  Object.fromEntries(fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').map((l) => l.split(':\t')).filter((kv) => kv.length === 2));

const VARIANTS = [
  { name: 'supervised', args: ['--supervise'] },
  { name: 'supervised, the worker sandboxed under seccomp kill', args: ['--supervise', '--sandbox=namespace', '--seccomp=kill'] },
];

for (const variant of VARIANTS) describe.skipIf(skip)(`a back-end (${variant.name}) restarted under a running guest${skip ? ` (skipped: needs ${missing.join(', ')})` : ''}`, () => {
  let dir = '';
  let share = '';
  let boot: BootResult;
  let be: RunningBackend | null = null;
  const events: string[] = [];
  let killed = -1;
  /** the worker as seen before the crash: its status and namespaces */
  let seen: { status: Record<string, string>; mnt: string; pid: string } | null = null;

  beforeAll(async () => {
    dir = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'handlefs-restart-')));
    share = join(dir, 'share');
    fs.mkdirSync(join(share, 'w'), { recursive: true });
    fs.mkdirSync(join(share, 'h'));
    const socketPath = join(dir, 'vhost.sock');
    be = await startBackend({ ...handlefsBackend, argv: (p) => [...handlefsBackend.argv(p), ...variant.args, '--log-level=info'] },
      { socketPath, sharedDir: share });
    const backendPid = be.pid;
    try {
      boot = await bootGuest({
        socketPath,
        timeoutMs: 240_000,
        script: [
          'guest-check handle-save /mnt/h /scratch/handle',
          'i=0',
          `while [ $i -lt ${ROUNDS} ]; do`,
          '  i=$((i+1))',
          '  d="payload-$i-$(head -c $((i % 97)) /dev/zero | tr "\\0" x)-end"',
          '  if printf "%s" "$d" > /mnt/w/f$i && [ "$(cat /mnt/w/f$i)" = "$d" ]; then echo "OK $i"; else echo "ERR $i"; fi',
          '  if [ $i -gt 5 ]; then j=$((i-5)); e="payload-$j-$(head -c $((j % 97)) /dev/zero | tr "\\0" x)-end"; [ "$(cat /mnt/w/f$j 2>/dev/null)" = "$e" ] || echo "RERR $j"; fi',
          'done',
          'sync; echo 3 > /proc/sys/vm/drop_caches',
          'guest-check handle-open /mnt /scratch/handle',
        ].join('\n'),
        onLine: (line) => {
          if (line === `OK ${UPGRADE_AT}`) {
            events.push('upgrade');
            process.kill(backendPid, 'SIGHUP');
          }
          if (line === `OK ${KILL_AT}`) {
            const w = workerOf(backendPid);
            events.push(`kill ${w}`);
            if (w) {
              seen = { status: status(w), mnt: fs.readlinkSync(`/proc/${w}/ns/mnt`), pid: fs.readlinkSync(`/proc/${w}/ns/pid`) };
              killed = w;
              process.kill(w, 'SIGKILL');
            }
          }
        },
      });
    } catch (e) {
      (e as Error).message += `\nback-end log:\n${be.log().slice(-3000)}`;
      throw e;
    }
  }, 300_000);

  afterAll(async () => {
    await be?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the guest ran its whole loop through an upgrade and a worker crash', () => {
    expect(events).toEqual(['upgrade', `kill ${killed}`]);
    expect(killed).toBeGreaterThan(0);
    expect(boot.status).toBe(0);
    const log = be!.log();
    expect(log).toMatch(/upgrade done/);
    expect(log).toMatch(/the vhost-user worker died; starting a successor/);
    expect(boot.lines.filter((l) => /^(OK|ERR) \d+$/.test(l))).toHaveLength(ROUNDS);
  });

  it('every file written without an error is on the host byte for byte; at most the requests in flight at the crash failed', () => {
    const ok = boot.lines.filter((l) => l.startsWith('OK ')).map((l) => Number(l.slice(3)));
    const failed = boot.lines.filter((l) => /^R?ERR /.test(l));
    expect(failed.length, failed.join(', ')).toBeLessThanOrEqual(2);
    expect(ok.length).toBeGreaterThanOrEqual(ROUNDS - 2);
    for (const i of ok) expect(fs.readFileSync(join(share, 'w', `f${i}`), 'utf8'), `f${i}`).toBe(data(i));
  });

  it('a file handle the guest kept from before both restarts opens the same file', () => {
    expect(boot.lines).toContain('HANDLE ok');
  });

  it(variant.args.includes('--sandbox=namespace') ? 'the worker ran in its own namespaces, without new privileges, under the seccomp filter' : 'the worker ran in the caller\'s namespaces, unfiltered', () => {
    expect(seen).not.toBeNull();
    const sandboxed = variant.args.includes('--sandbox=namespace');
    expect(seen!.mnt !== fs.readlinkSync('/proc/self/ns/mnt')).toBe(sandboxed);
    expect(seen!.pid !== fs.readlinkSync('/proc/self/ns/pid')).toBe(sandboxed);
    expect(seen!.status.Seccomp).toBe(sandboxed ? '2' : '0');
    expect(seen!.status.NoNewPrivs).toBe(sandboxed ? '1' : '0');
  });
});
