/**
 * Host changes seen at once: with --cache always the client keeps names and attributes for a day,
 * so without notifications a change the host makes behind the server is invisible; with them
 * (fanotify -> FUSE_NOTIFY_INVAL_ENTRY/_INODE) the client sees it at once. A client in another
 * process (fixtures/coherence-client.mjs) primes its cache, then polls every millisecond while
 * the host (this process, on orig/) renames, replaces (write + rename over), appends, chmods and
 * creates. The latency of each is measured from just before the host's change to the client's
 * first probe that sees it; the distribution is printed. Asserted: the median within 100 ms (the
 * issue's figure) and each within 1 s (a loaded 2-core CI machine may stall one step; the control
 * shows that without notifications nothing is seen at all).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run, start, type Started } from '../helpers/child.js';
import { CLI, mountSkipReason, REPO, sandboxed, underSandbox, withMount } from '../helpers/mount.js';

const skip = mountSkipReason();
const CLIENT = path.join(REPO, 'test/mount/fixtures/coherence-client.mjs');
const ROUNDS = 5;
const MEDIAN_MS = 100;
const EACH_MS = 1000;

type Probe = { kind: 'exists' | 'content' | 'mode'; path: string } | { kind: 'lists'; path: string; name: string };
type Value = boolean | string | number;
interface Step {
  what: string;
  probe: Probe;
  old: Value;
  want: Value;
  change: () => void;
}

/** The watching client: one probe at a time, answers as JSON lines. */
class Client {
  private readonly p: Started;
  private n = 0;
  constructor(mnt: string) {
    this.p = start(process.execPath, [CLIENT, mnt]);
  }

  private async answer(id: number, key: string, ms: number): Promise<Record<string, unknown>> {
    const end = Date.now() + ms;
    for (;;) {
      for (const l of this.p.stdout().split('\n')) {
        if (!l) continue;
        const o = JSON.parse(l) as Record<string, unknown>;
        if (o.id === id && (key in o || 'error' in o || 'timeout' in o)) return o;
      }
      if (Date.now() > end) throw new Error(`client gave no ${key} for probe ${id} in ${ms} ms; stderr: ${this.p.stderr()}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Prime, change, wait: the latency in ms, or null when the client did not see the change within boundMs. */
  async step(s: Step, boundMs: number): Promise<number | null> {
    const id = ++this.n;
    this.p.child.stdin!.write(JSON.stringify({ id, ...s.probe, want: s.want, boundMs }) + '\n');
    const primed = await this.answer(id, 'primed', 10_000);
    expect(primed.primed, `${s.what}: the client's view before the change`).toEqual(s.old);
    const t0 = process.hrtime.bigint();
    s.change();
    const r = await this.answer(id, 'seen', boundMs + 10_000);
    if (r.error) throw new Error(`${s.what}: client failed: ${String(r.error)}`);
    if (r.timeout) return null;
    return Number(BigInt(r.seen as string) - t0) / 1e6;
  }

  kill(): Promise<void> {
    return this.p.kill();
  }
}

/** The five host changes of round r, on files made by fill(). */
function steps(orig: string, r: number): Step[] {
  const o = (rel: string): string => path.join(orig, rel);
  return [
    { what: 'rename', probe: { kind: 'exists', path: `d/a${r}` }, old: true, want: false,
      change: () => fs.renameSync(o(`d/a${r}`), o(`d/z${r}`)) },
    { what: 'replace', probe: { kind: 'content', path: `d/b${r}` }, old: 'old', want: `new${r}`,
      change: () => {
        fs.writeFileSync(o(`d/.b${r}.tmp`), `new${r}`);
        fs.renameSync(o(`d/.b${r}.tmp`), o(`d/b${r}`));
      } },
    { what: 'append', probe: { kind: 'content', path: `f${r}` }, old: 'x', want: 'x+more',
      change: () => fs.appendFileSync(o(`f${r}`), '+more') },
    { what: 'chmod', probe: { kind: 'mode', path: `m${r}` }, old: 0o644, want: 0o600,
      change: () => fs.chmodSync(o(`m${r}`), 0o600) },
    { what: 'create', probe: { kind: 'lists', path: 'd', name: `c${r}` }, old: false, want: true,
      change: () => fs.writeFileSync(o(`d/c${r}`), 'c') },
  ];
}

function fill(orig: string): void {
  fs.mkdirSync(path.join(orig, 'd'));
  for (let r = 0; r < ROUNDS; r++) {
    fs.writeFileSync(path.join(orig, `d/a${r}`), 'a');
    fs.writeFileSync(path.join(orig, `d/b${r}`), 'old');
    fs.writeFileSync(path.join(orig, `f${r}`), 'x');
    fs.writeFileSync(path.join(orig, `m${r}`), 'm', { mode: 0o644 });
    fs.chmodSync(path.join(orig, `m${r}`), 0o644);
  }
}

type Stats = Record<string, number>;
const readStats = (file: string): Stats => JSON.parse(fs.readFileSync(file, 'utf8')) as Stats;

/** The stats file once it was rewritten after now (it is written every second). */
async function freshStats(file: string): Promise<Stats> {
  const since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      if (fs.statSync(file).mtimeMs > since) return readStats(file);
    } catch {
      /* not written yet */
    }
    if (Date.now() - since > 5000) throw new Error(`${file} was not rewritten within 5 s`);
  }
}

const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

describe.skipIf(skip !== null || underSandbox)(`host changes seen at once (--cache always)${sandboxed('--host-notify serves in-process mounts')}`, () => {
  it('the client sees each host rename, replace, append, chmod and create at once; counts in the stats file', async () => {
    await withMount({ args: ['--cache', 'always', '--stats-file', '{dir}/stats.json'], setup: fill }, async ({ orig, mnt, dir }) => {
      const statsFile = path.join(dir, 'stats.json');
      const client = new Client(mnt);
      const byKind: Record<string, number[]> = {};
      try {
        for (let r = 0; r < ROUNDS; r++) {
          for (const s of steps(orig, r)) {
            const ms = await client.step(s, 2000);
            expect(ms, `${s.what} (round ${r}) was not seen within 2 s`).not.toBeNull();
            (byKind[s.what] ??= []).push(ms!);
          }
        }
      } finally {
        await client.kill();
      }
      const all = Object.values(byKind).flat();
      const fmt = (xs: number[]): string => `min ${Math.min(...xs).toFixed(1)} median ${quantile(xs, 0.5).toFixed(1)} max ${Math.max(...xs).toFixed(1)} ms`;
      console.log(`coherence latency (${all.length} changes): ${fmt(all)}\n` +
        Object.entries(byKind).map(([k, xs]) => `  ${k}: ${xs.map((x) => x.toFixed(1)).join(', ')}`).join('\n'));
      expect(quantile(all, 0.5)).toBeLessThanOrEqual(MEDIAN_MS);
      for (const x of all) expect(x).toBeLessThanOrEqual(EACH_MS);

      // the counts: names (rename 2, replace 2 or 3: the temporary name's create and move may
      // coalesce, create 1 a round), inodes, and what the kernel took
      const s = await freshStats(statsFile);
      expect(s.notifyEntry).toBeGreaterThanOrEqual(ROUNDS * 5);
      expect(s.notifyInode).toBeGreaterThanOrEqual(ROUNDS * 2);
      expect(s.notifyWritten).toBeGreaterThan(0);
      expect(s.notifyWritten + s.notifyNotCached).toBe(s.notifyEntry + s.notifyInode);
      expect(s.notifyFailed).toBe(0);
      expect(s.notifyDropped).toBe(0);

      // the client's own changes, made through the server, are not told back to it
      const c = await run('sh', ['-c', 'echo hi > "$1/own" && chmod 600 "$1/own" && mv "$1/own" "$1/d/own2" && echo more >> "$1/d/own2"', 'x', mnt], { timeoutMs: 10_000 });
      expect(c.status).toBe(0);
      const after = await freshStats(statsFile);
      expect(after.hostEventsOwn).toBeGreaterThan(s.hostEventsOwn!);
      expect(after.notifyEntry).toBe(s.notifyEntry);
      expect(after.notifyInode).toBe(s.notifyInode);
    });
  }, 120_000);

  it('notifications racing the client in the same directory never stall the mount', async () => {
    // The kernel handles a notification under the directory's lock, which a client's create or
    // unlink holds while it waits for the server's reply: written from the thread that replies,
    // one notification would stop the mount. The host churns names in d/ while the client does.
    await withMount({ args: ['--cache', 'always', '--stats-file', '{dir}/stats.json'], setup: fill }, async ({ orig, mnt, dir }) => {
      const churn = start('sh', ['-c', 'i=0; while [ $i -lt 100000 ]; do echo $i > "$1/h$i"; mv "$1/h$i" "$1/g$i"; rm "$1/g$i"; i=$((i+1)); done', 'x', path.join(orig, 'd')]);
      try {
        const c = await run('sh', ['-c', 'i=0; while [ $i -lt 300 ]; do echo $i > "$1/d/c$i" && mv "$1/d/c$i" "$1/d/k$i" && ls "$1/d" > /dev/null && rm "$1/d/k$i" || exit 1; i=$((i+1)); done', 'x', mnt], { timeoutMs: 30_000 });
        expect(c.timedOut).toBe(false);
        expect(c.status).toBe(0);
      } finally {
        await churn.kill();
      }
      const s = await freshStats(path.join(dir, 'stats.json'));
      expect(s.notifyEntry).toBeGreaterThan(100);
      expect(s.notifyWritten).toBeGreaterThan(0);
      const r = await run('stat', ['-c', '%F', path.join(mnt, 'd')], { timeoutMs: 5000 });
      expect(r.stdout.trim()).toBe('directory');
    });
  }, 60_000);

  it('control: without notifications (--no-host-notify) the same changes stay unseen, the cache holds', async () => {
    await withMount({ args: ['--cache', 'always', '--no-host-notify', '--stats-file', '{dir}/stats.json'], setup: fill }, async ({ orig, mnt, dir }) => {
      const client = new Client(mnt);
      try {
        for (const s of steps(orig, 0).filter((x) => x.what !== 'create')) {
          expect(await client.step(s, 500), `${s.what} was seen without notifications`).toBeNull();
        }
      } finally {
        await client.kill();
      }
      const s = await freshStats(path.join(dir, 'stats.json'));
      expect(s.hostEvents).toBe(0);
      expect(s.notifyEntry).toBe(0);
    });
  }, 60_000);
});

const NOBODY = 65534;
const asNobody = (cmd: string[]): string[] => ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...cmd];
const haveTools = fs.existsSync('/usr/bin/fusermount3') && fs.existsSync('/usr/bin/setpriv') && fs.existsSync(CLI);

describe.skipIf(skip !== null || !haveTools || underSandbox)(`without fanotify (a server without CAP_SYS_ADMIN)${sandboxed('--host-notify serves in-process mounts')}`, () => {
  it('says so once in the log and falls back to the timeouts: --cache auto sees a host chmod after its 1 s', async () => {
    const setup = (orig: string): void => {
      const dir = path.dirname(orig);
      fs.chmodSync(dir, 0o755);
      fs.writeFileSync(path.join(orig, 'f'), 'from the host');
      for (const p of [dir, orig, path.join(dir, 'mnt'), path.join(orig, 'f')]) fs.chownSync(p, NOBODY, NOBODY);
    };
    // fusermount3 opens /dev/fuse with the caller's rights (see nonroot.test.ts)
    const mode0 = fs.statSync('/dev/fuse').mode & 0o777;
    fs.chmodSync('/dev/fuse', 0o666);
    try {
      await withMount({ setup, wrap: asNobody([]), args: ['--cache', 'auto', '--log-level', 'info', '--stats-file', '{dir}/stats.json'] },
        async ({ orig, mnt, dir, serverLog }) => {
          const client = (script: string) => run('setpriv', asNobody(['sh', '-c', script, 'x', mnt]).slice(1), { timeoutMs: 10_000 });
          const r = await client('cat "$1/f" && stat -c %a "$1/f" && echo written > "$1/g" && cat "$1/g"');
          expect(r.stdout).toBe('from the host644\nwritten\n');
          fs.chmodSync(path.join(orig, 'f'), 0o600);
          // the attribute timeout of --cache auto is 1 s: seen after it, not at once
          const t0 = Date.now();
          const w = await client('i=0; while [ $i -lt 300 ]; do [ "$(stat -c %a "$1/f")" = 600 ] && exit 0; sleep 0.01; i=$((i+1)); done; exit 1');
          expect(w.status).toBe(0);
          expect(Date.now() - t0).toBeLessThan(3000);
          const s = await freshStats(path.join(dir, 'stats.json'));
          expect(s.hostEvents).toBe(0);
          expect(s.notifyEntry + s.notifyInode).toBe(0);
          const said = serverLog().split('\n').filter((l) => l.includes('host changes are not told to the client'));
          expect(said).toHaveLength(1);
        });
    } finally {
      fs.chmodSync('/dev/fuse', mode0);
    }
  }, 60_000);
});
