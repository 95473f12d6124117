// FUSE passthrough in the core: open files are registered as kernel backing files through the
// BackingFiles the transport gives (here a recording fake). The kernel allows one backing file per
// inode (a second open given another fails with EIO), so every open of an inode shares one.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { O_CREAT, O_RDONLY, O_RDWR, O_WRONLY, S_ISUID } from '../../src/sys/syscalls.js';
import { B, ctx, makeFs, useCleanup } from '../helpers/fs-fixture.js';
import { found } from '../helpers/errno.js';

const { cores, dir } = useCleanup();

function setup() {
  const root = dir('handlefs-backing-');
  const opened: number[] = [];
  const closed: number[] = [];
  let next = 100;
  const { pfs } = makeFs(root, {
    backing: {
      open: (fd) => {
        expect(fd).toBeGreaterThanOrEqual(0);
        opened.push(++next);
        return next;
      },
      close: (id) => void closed.push(id),
    },
  });
  cores.push(pfs);
  return { pfs, root, opened, closed };
}

describe('backing files (FUSE passthrough)', () => {
  it('every open of an inode shares one backing id, released with its last open', async () => {
    const { pfs, root, opened, closed } = setup();
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: true });
    fs.writeFileSync(path.join(root, 'f'), 'x');
    fs.writeFileSync(path.join(root, 'g'), 'y');
    const f = found(await pfs.lookup(ctx, 1n, B('f')));
    const a = await pfs.open(ctx, f.nodeid, O_RDONLY);
    const b = await pfs.open(ctx, f.nodeid, O_WRONLY);
    expect(a.backingId).toBe(101);
    expect(b.backingId).toBe(101);
    // another inode gets its own
    const g = found(await pfs.lookup(ctx, 1n, B('g')));
    const c = await pfs.open(ctx, g.nodeid, O_RDWR);
    expect(c.backingId).toBe(102);
    expect(opened).toEqual([101, 102]);
    await pfs.release(ctx, f.nodeid, a.fh, O_RDONLY, 0n, false);
    expect(closed).toEqual([]);
    await pfs.release(ctx, f.nodeid, b.fh, O_WRONLY, 0n, false);
    expect(closed).toEqual([101]);
    // after the last release a new open registers anew; a create shares the same way
    const d = await pfs.open(ctx, f.nodeid, O_RDONLY);
    expect(d.backingId).toBe(103);
    const n = await pfs.create(ctx, 1n, B('new'), 0o644, O_RDWR | O_CREAT, 0);
    const n2 = await pfs.open(ctx, n.entry.nodeid, O_RDONLY);
    expect(n2.backingId).toBe(n.open.backingId);
    await pfs.release(ctx, g.nodeid, c.fh, O_RDWR, 0n, false);
    await pfs.release(ctx, f.nodeid, d.fh, O_RDONLY, 0n, false);
    await pfs.release(ctx, n.entry.nodeid, n.open.fh, O_RDWR, 0n, false);
    await pfs.release(ctx, n.entry.nodeid, n2.fh, O_RDONLY, 0n, false);
    expect(closed.sort()).toEqual([101, 102, 103, 104]);
  });

  it('a setuid file and a connection without passthrough get no backing file', async () => {
    const { pfs, root, opened } = setup();
    fs.writeFileSync(path.join(root, 'f'), 'x');
    const f = found(await pfs.lookup(ctx, 1n, B('f')));
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: false });
    expect((await pfs.open(ctx, f.nodeid, O_RDONLY)).backingId).toBeUndefined();
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: true });
    fs.chmodSync(path.join(root, 'f'), 0o755 | S_ISUID);
    expect((await pfs.open(ctx, f.nodeid, O_RDONLY)).backingId).toBeUndefined();
    expect(opened).toEqual([]);
  });
});
