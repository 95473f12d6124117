/**
 * The server lifecycle (src/cli/lifecycle.ts) around a served mount it controls: signals, a signal
 * during set-up, SIGHUP, an uncaught exception, readiness, the stats file, set-up failures and the
 * listeners it leaves behind. The handlers it installs are called directly (emitting a real signal
 * would reach the test runner's own handlers too); the mounted behaviour of each frontend is in
 * test/mount (smoke, cli, restart).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeConfig } from '../../src/config.js';
import { runServer, type Served } from '../../src/cli/lifecycle.js';

type Event = 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'uncaughtException';
const EVENTS: Event[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'uncaughtException'];

/** A served mount whose every step the test sees and decides. */
class FakeServed implements Served {
  calls: string[] = [];
  readonly live: Promise<string>;
  readonly ended: Promise<number>;
  goLive!: () => void;
  end!: (code: number) => void;
  upgrade?: () => void;
  constructor(readonly stats: Served['stats'] = { file: null, counters: () => ({}) }, upgradable = false) {
    this.live = new Promise((r) => (this.goLive = () => r('/s on /m (fake)')));
    this.ended = new Promise((r) => (this.end = r));
    if (upgradable) this.upgrade = () => void this.calls.push('upgrade');
  }
  stop(why: string, failure = false): void {
    this.calls.push(`stop ${why}${failure ? ' (failure)' : ''}`);
  }
  async crash(): Promise<void> {
    this.calls.push('crash');
  }
  async release(): Promise<void> {
    this.calls.push('release');
  }
}

/** The listener runServer added for `ev` (the one not there before it started). */
function added(ev: Event, before: Map<Event, Function[]>): (...a: unknown[]) => void {
  const now = process.listeners(ev as 'SIGINT') as Function[];
  const fresh = now.filter((l) => !before.get(ev)!.includes(l));
  expect(fresh).toHaveLength(1);
  return fresh[0] as (...a: unknown[]) => void;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('server lifecycle', () => {
  const cfg = makeConfig('/s', '/m', { logLevel: 'silent' });
  let before: Map<Event, Function[]>;
  let dir = '';
  beforeEach(() => {
    before = new Map(EVENTS.map((e) => [e, [...(process.listeners(e as 'SIGINT') as Function[])]]));
    dir = fs.mkdtempSync(join(os.tmpdir(), 'handlefs-lifecycle-'));
  });
  afterEach(() => {
    // every listener it added is gone once runServer has returned
    for (const e of EVENTS) expect(process.listeners(e as 'SIGINT')).toEqual(before.get(e));
    fs.rmSync(dir, { recursive: true, force: true });
    delete process.env.HANDLEFS_READY_FD;
  });

  it('SIGTERM stops; once ended, the stats file gets its last write, then the server is released; the code is the server\'s', async () => {
    let n = 0;
    const statsFile = join(dir, 'stats');
    const s = new FakeServed({ file: statsFile, counters: () => ({ n: ++n }) });
    const done = runServer(cfg, async () => s);
    await tick();
    expect(JSON.parse(fs.readFileSync(statsFile, 'utf8')).n).toBe(1); // written at start
    added('SIGTERM', before)('SIGTERM');
    expect(s.calls).toEqual(['stop received SIGTERM']);
    s.end(0);
    expect(await done).toBe(0);
    expect(JSON.parse(fs.readFileSync(statsFile, 'utf8')).n).toBe(2); // and at the end
    expect(s.calls).toEqual(['stop received SIGTERM', 'release']);
  });

  it('a signal during set-up takes effect once set up; a failure code is passed on', async () => {
    const s = new FakeServed();
    let setUp!: (v: Served) => void;
    const done = runServer(cfg, () => new Promise<Served>((r) => (setUp = r)));
    await tick();
    added('SIGINT', before)('SIGINT');
    expect(s.calls).toEqual([]);
    setUp(s);
    await tick();
    expect(s.calls).toEqual(['stop received SIGINT']);
    s.end(1);
    expect(await done).toBe(1);
  });

  it('SIGHUP upgrades a server that can; any other goes on serving', async () => {
    const up = new FakeServed(undefined, true);
    const done1 = runServer(cfg, async () => up);
    await tick();
    added('SIGHUP', before)('SIGHUP');
    expect(up.calls).toEqual(['upgrade']);
    up.end(0);
    expect(await done1).toBe(0);

    const plain = new FakeServed();
    const done2 = runServer(cfg, async () => plain);
    await tick();
    added('SIGHUP', before)('SIGHUP');
    expect(plain.calls).toEqual([]);
    plain.end(0);
    expect(await done2).toBe(0);
  });

  it('an uncaught exception makes the server unmount (crash) and then ends the process with 1, once', async () => {
    const s = new FakeServed();
    const exits: number[] = [];
    const done = runServer(cfg, async () => s, { exit: (code) => void exits.push(code) });
    await tick();
    const onCrash = added('uncaughtException', before);
    onCrash(new Error('boom'));
    onCrash(new Error('again'));
    await tick();
    expect(s.calls).toEqual(['crash']);
    expect(exits).toEqual([1]);
    s.end(1); // (a real process has exited by now)
    await done;
  });

  it('HANDLEFS_READY_FD gets "ready" once the mount is live, not before', async () => {
    const file = join(dir, 'ready');
    process.env.HANDLEFS_READY_FD = String(fs.openSync(file, 'w'));
    const s = new FakeServed();
    const done = runServer(cfg, async () => s);
    await tick();
    expect(fs.readFileSync(file, 'utf8')).toBe('');
    s.goLive();
    await tick();
    expect(fs.readFileSync(file, 'utf8')).toBe('ready\n');
    s.end(0);
    await done;
  });

  it('exiting: once ended, SIGINT, SIGTERM and SIGHUP stay caught and do nothing until the process exits (not killed by them on the way out)', async () => {
    const s = new FakeServed(undefined, true);
    const done = runServer(cfg, async () => s, { exiting: true });
    await tick();
    s.end(0);
    expect(await done).toBe(0);
    // the server's own handlers are gone; one that does nothing is left for each (the CLI exits next)
    const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const late = sigs.map((e) => added(e, before));
    expect(new Set(late).size).toBe(1);
    for (const e of sigs) late[0]!(e);
    expect(s.calls).toEqual(['release']);
    for (const e of sigs) process.off(e, late[0] as () => void);
    expect(process.listeners('uncaughtException')).toEqual(before.get('uncaughtException'));
  });

  it('a set-up failure (start throws) is exit 1', async () => {
    expect(await runServer(cfg, async () => {
      throw new Error('mount /m failed (EPERM); mounting needs CAP_SYS_ADMIN\nsecond line');
    })).toBe(1);
  });
});
