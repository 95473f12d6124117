// The fanotify watch's queue reading: one epoch() takes in every event queued so far, also when
// they fill the read buffer several times over (a read stops early only when it left room for the
// largest event, which means the queue was empty).
import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { MoveWatch, type HostEvent } from '../../src/fs/move-watch.js';
import { FAN_MOVED_TO } from '../../src/sys/constants.js';
import { scratchExt4, scratchExt4Unavailable } from '../helpers/scratch-ext4.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

// a filesystem-wide mark needs CAP_SYS_ADMIN; a scratch filesystem of its own keeps other tests'
// renames out of the counts
const why = scratchExt4Unavailable();

describe('MoveWatch queue reading', () => {
  it.skipIf(why !== null)(`one epoch() takes in every queued event, several buffers' worth${why ? ` (skipped: ${why})` : ''}`, () => {
    const sx = scratchExt4();
    cleanups.push(sx.cleanup);
    const root = path.join(sx.dir, 'share');
    fs.mkdirSync(root);
    const seen: HostEvent[] = [];
    const watch = new MoveWatch(Buffer.from(root), pino({ level: 'silent' }), {
      event: (e) => seen.push(e),
      overflow: () => { throw new Error('queue overflow'); },
    });
    cleanups.push(() => watch.close());
    expect(watch.enabled).toBe(true);
    const before = watch.epoch();
    // 600 renames with 100-byte names: each one queues a MOVED_FROM and a MOVED_TO event of about
    // 170 bytes, some 200 KB in all, against a 16 KB read buffer
    const N = 600;
    const long = (i: number, side: string): string => `${side}-${String(i).padStart(4, '0')}-${'n'.repeat(90)}`;
    for (let i = 0; i < N; i++) fs.writeFileSync(path.join(root, long(i, 'a')), '');
    for (let i = 0; i < N; i++) fs.renameSync(path.join(root, long(i, 'a')), path.join(root, long(i, 'b')));
    const after = watch.epoch();
    // every MOVED_FROM moved the epoch on, in this one call
    expect(after - before).toBe(N);
    const movedTo = new Set(seen.filter((e) => e.mask & FAN_MOVED_TO).map((e) => e.name?.toString()));
    for (let i = 0; i < N; i++) expect(movedTo.has(long(i, 'b'))).toBe(true);
    // and nothing is left behind for a later read
    expect(watch.epoch()).toBe(after);
  });

  it.skipIf(why !== null)(`a sink's own pid's events reach own(), unparsed; another process's reach event()${why ? ` (skipped: ${why})` : ''}`, () => {
    const sx = scratchExt4();
    cleanups.push(sx.cleanup);
    const root = path.join(sx.dir, 'share');
    fs.mkdirSync(root);
    const seen: HostEvent[] = [];
    let own = 0;
    const watch = new MoveWatch(Buffer.from(root), pino({ level: 'silent' }), {
      ownPid: process.pid,
      own: () => { own++; },
      event: (e) => seen.push(e),
      overflow: () => { throw new Error('queue overflow'); },
    });
    cleanups.push(() => watch.close());
    expect(watch.enabled).toBe(true);
    const before = watch.epoch();
    // this process: creates, writes, renames; none of it may be parsed
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(root, `mine-${i}`), 'x');
    for (let i = 0; i < 50; i++) fs.renameSync(path.join(root, `mine-${i}`), path.join(root, `mine-${i}-moved`));
    const mid = watch.epoch();
    expect(seen).toEqual([]);
    // a create, a write and a rename per file at least
    expect(own).toBeGreaterThanOrEqual(150);
    // own renames still move the epoch on: the confinement proofs do not depend on the sink
    expect(mid - before).toBe(50);
    // another process's changes are parsed and handed over with its pid
    const r = spawnSync('sh', ['-c', 'echo y > "$1/theirs" && mv "$1/theirs" "$1/theirs-moved"', 'sh', root]);
    expect(r.status).toBe(0);
    expect(watch.epoch() - mid).toBe(1);
    expect(seen.length).toBeGreaterThan(0);
    for (const e of seen) expect(e.pid).not.toBe(process.pid);
    const moved = seen.find((e) => e.mask & FAN_MOVED_TO);
    expect(moved?.name?.toString()).toBe('theirs-moved');
  });
});
