/**
 * Host changes -> the core's onHostChange listener (src/fs/host-changes.ts): a change another
 * process makes on the shared tree reaches the listener as the invalidations the client needs, the
 * server's own changes do not, and a burst is coalesced. The "host" is a shell in another process
 * (events are told apart by pid: this test process is the server). Needs CAP_SYS_ADMIN (the
 * filesystem-wide fanotify mark): the suite runs as root.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HostChangeListener } from '../../src/fs/options.js';
import type { PassthroughFs } from '../../src/fs/passthrough.js';
import { O_WRONLY } from '../../src/sys/constants.js';
import { runSync } from '../helpers/child.js';
import { B, ctx, isRoot, makeFs, tmpdir, walk } from '../helpers/fs-fixture.js';

type Call = { entry: string } | { inode: bigint; data: boolean };

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

function setup(fill: (root: string) => void) {
  const root = tmpdir('hfs-host-');
  fill(root);
  const calls: Call[] = [];
  const listener: HostChangeListener = {
    invalEntry: (parent, name) => calls.push({ entry: `${parent}/${name.toString()}` }),
    invalInode: (nodeid, data) => calls.push({ inode: nodeid, data }),
  };
  const { pfs, cap } = makeFs(root, { onHostChange: listener });
  cleanup.push(async () => {
    await pfs.destroy();
    fs.rmSync(root, { recursive: true, force: true });
  });
  return { root, pfs, cap, calls };
}

/** The host: a shell in another process (its pid is not the server's). */
function host(root: string, script: string): void {
  const r = runSync('sh', ['-c', script], { cwd: root });
  if (r.status !== 0) throw new Error(`host script failed: ${r.stderr}`);
}

/** Wait (on the event loop: the watch reads its queue there) until `ok` holds, up to 2 s. */
async function until(ok: () => boolean): Promise<void> {
  const end = Date.now() + 2000;
  while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
}

const settle = (ms = 100): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!isRoot)('host changes reach the onHostChange listener (fanotify; needs CAP_SYS_ADMIN)', () => {
  it('a rename in a known directory invalidates both names and the directory', async () => {
    const { root, pfs, calls } = setup((r) => {
      fs.mkdirSync(path.join(r, 'd'));
      fs.writeFileSync(path.join(r, 'd', 'a'), 'a');
    });
    const d = await walk(pfs, 'd');
    host(root, 'mv d/a d/b');
    await until(() => calls.length >= 3);
    await settle();
    expect(calls).toContainEqual({ entry: `${d.nodeid}/a` });
    expect(calls).toContainEqual({ entry: `${d.nodeid}/b` });
    // the directory's attributes and cached listing: once, though two names changed
    expect(calls.filter((c) => 'inode' in c)).toEqual([{ inode: d.nodeid, data: true }]);
    const n = pfs.counters();
    expect(n.notifyEntry).toBe(2);
    expect(n.notifyInode).toBe(1);
    expect(n.notifyCoalesced).toBeGreaterThanOrEqual(1);
    expect(n.renamesSeen).toBeGreaterThanOrEqual(1);
  });

  it('a write invalidates the content, a chmod only the attributes; a directory chmod reaches the directory', async () => {
    const { root, pfs, calls } = setup((r) => {
      fs.mkdirSync(path.join(r, 'd'));
      fs.writeFileSync(path.join(r, 'd', 'f'), 'x');
      fs.writeFileSync(path.join(r, 'd', 'm'), 'x');
    });
    const d = await walk(pfs, 'd');
    const f = await walk(pfs, 'd/f');
    const m = await walk(pfs, 'd/m');
    host(root, 'echo more >> d/f');
    await until(() => calls.length >= 1);
    await settle();
    expect(calls).toEqual([{ inode: f.nodeid, data: true }]);
    calls.length = 0;
    host(root, 'chmod 600 d/m');
    await until(() => calls.length >= 1);
    await settle();
    expect(calls).toEqual([{ inode: m.nodeid, data: false }]);
    calls.length = 0;
    host(root, 'chmod 700 d');
    await until(() => calls.length >= 1);
    await settle();
    expect(calls).toEqual([{ inode: d.nodeid, data: false }]);
  });

  it("the server's own changes are not told back; names the client never looked up are not told", async () => {
    const { root, pfs, calls } = setup((r) => {
      fs.mkdirSync(path.join(r, 'd'));
      fs.mkdirSync(path.join(r, 'unknown'));
    });
    const d = await walk(pfs, 'd');
    // through the core (this process): a create, a write, a rename
    const c = await pfs.create(ctx, d.nodeid, B('mine'), 0o100644, O_WRONLY, 0);
    await pfs.write(ctx, c.entry.nodeid, c.open.fh, 0, B('data'), 0);
    await pfs.release(ctx, c.entry.nodeid, c.open.fh, O_WRONLY, 0n, false);
    await pfs.rename(ctx, d.nodeid, B('mine'), d.nodeid, B('mine2'), 0);
    // by the host, in a directory the client has not looked up
    host(root, 'echo x > unknown/f && mv unknown/f unknown/g');
    await until(() => pfs.counters().hostEvents >= 6);
    await settle();
    expect(calls).toEqual([]);
    const n = pfs.counters();
    expect(n.hostEventsOwn).toBeGreaterThanOrEqual(3);
    expect(n.hostEvents).toBeGreaterThan(n.hostEventsOwn);
    expect(n.notifyEntry + n.notifyInode).toBe(0);
  });

  it('a host writing in a loop costs one invalidation per window, not one per write', async () => {
    const { root, pfs, calls } = setup((r) => fs.writeFileSync(path.join(r, 'f'), ''));
    const f = await walk(pfs, 'f');
    // a new process per write: the kernel merges queued events of one process on one file, not of several
    host(root, 'i=0; while [ $i -lt 200 ]; do /bin/echo $i >> f; i=$((i+1)); done');
    await until(() => calls.length >= 1);
    await settle(200);
    expect(calls.length).toBeGreaterThanOrEqual(1);
    expect(calls.every((c) => 'inode' in c && c.inode === f.nodeid && c.data)).toBe(true);
    const n = pfs.counters();
    expect(n.notifyInode).toBe(calls.length);
    expect(n.notifyInode).toBeLessThan(100);
    expect(n.notifyCoalesced).toBeGreaterThan(100);
  });

  it('without a listener nothing is read beyond renames, and the counters stay 0', async () => {
    const root = tmpdir('hfs-host-');
    fs.mkdirSync(path.join(root, 'd'));
    fs.writeFileSync(path.join(root, 'd', 'f'), '');
    const { pfs } = makeFs(root);
    cleanup.push(async () => {
      await pfs.destroy();
      fs.rmSync(root, { recursive: true, force: true });
    });
    await walk(pfs, 'd/f');
    host(root, 'echo x >> d/f && chmod 600 d/f && mv d/f d/g');
    await settle();
    await walk(pfs, 'd/g'); // a lookup in a directory other than the root reads the rename queue
    const n = pfs.counters();
    expect(n.renamesSeen).toBeGreaterThanOrEqual(1);
    expect(n.hostEvents).toBe(0);
  });
});

export type { PassthroughFs };
