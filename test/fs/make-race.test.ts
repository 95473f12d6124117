/**
 * A name the host replaces between the server's make (mkdir, mknod, symlink, link) and its lookup
 * of what it made: another process on the host puts its own inode there in between, as the host
 * clients of test/stress/concurrency.test.ts do. The kernel refuses an entry of another type than
 * the one it asked for with EIO (fuse's create_new_entry), so the server must not send one: it
 * answers EEXIST, keeps no lookup count on the other inode, and leaves the host as it is.
 *
 * The race is made deterministic by running the host's move right after the server's syscall:
 * the addon's functions cannot be spied on (their properties are not configurable), so this file
 * replaces the syscalls module with one whose `sys` calls a hook after those four calls.
 */
import * as fs from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { S_IFIFO } from '../../src/sys/syscalls.js';
import { errnoOf, found } from '../helpers/errno.js';
import { B, ctx, pfs, P, expectHostAttr, useFs } from '../helpers/fs-fixture.js';

type Hooked = 'symlinkat' | 'mkdirat' | 'mknodat' | 'linkat';
const hook = vi.hoisted(() => ({ after: null as null | ((call: string) => void) }));

vi.mock('../../src/sys/syscalls.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/sys/syscalls.js')>();
  const real = m.sys as unknown as Record<string, unknown>;
  const sys: Record<string, unknown> = {};
  for (const k of Object.keys(real)) {
    const v = real[k];
    sys[k] = typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(real) : v;
  }
  for (const k of ['symlinkat', 'mkdirat', 'mknodat', 'linkat']) {
    const call = real[k] as (...a: unknown[]) => unknown;
    sys[k] = (...a: unknown[]) => {
      const r = call.apply(real, a);
      hook.after?.(k);
      return r;
    };
  }
  return { ...m, sys };
});

useFs();

const NODEV = { major: 0, minor: 0 };

/** Run `op` with `host` done right after the server's `call` (once). */
async function racing(call: Hooked, host: () => void, op: () => Promise<unknown>): Promise<string> {
  hook.after = (k) => {
    if (k !== call) return;
    hook.after = null;
    host();
  };
  try {
    return await errnoOf(op());
  } finally {
    hook.after = null;
  }
}

/** the host's regular file renamed over `name` (a directory there removed first) */
const hostFileOver = (name: string, dir = false) => () => {
  if (dir) fs.rmdirSync(P(name));
  fs.writeFileSync(P(`${name}.host`), 'the host file');
  fs.renameSync(P(`${name}.host`), P(name));
};

describe('a name the host replaces between the make and its lookup', () => {
  it("symlink, mknod of a FIFO, mkdir, link: EEXIST when the name became another type; the host's inode untouched, no inode kept", async () => {
    fs.writeFileSync(P('src'), 'linked');
    const src = found(await pfs.lookup(ctx, 1n, B('src')));
    const base = pfs.counters().inodes;
    expect(await racing('symlinkat', hostFileOver('sl'), () => pfs.symlink(ctx, B('target'), 1n, B('sl')))).toBe('EEXIST');
    expect(await racing('mknodat', hostFileOver('fifo'), () => pfs.mknod(ctx, 1n, B('fifo'), S_IFIFO | 0o644, NODEV, 0))).toBe('EEXIST');
    expect(await racing('mkdirat', hostFileOver('md', true), () => pfs.mkdir(ctx, 1n, B('md'), 0o755, 0))).toBe('EEXIST');
    for (const n of ['sl', 'fifo', 'md']) expect(fs.readFileSync(P(n), 'utf8')).toBe('the host file');
    // a hard link whose new name became the host's directory
    const dirOver = () => {
      fs.unlinkSync(P('ln'));
      fs.mkdirSync(P('ln'));
    };
    expect(await racing('linkat', dirOver, () => pfs.link(ctx, src.nodeid, 1n, B('ln')))).toBe('EEXIST');
    expect(fs.statSync(P('ln')).isDirectory()).toBe(true);
    expect(fs.readFileSync(P('src'), 'utf8')).toBe('linked');
    // the lookups made of the host's inodes were dropped: only src (and the root) are known
    expect(pfs.counters().inodes).toBe(base);
  });

  it("a symlink replaced by the host's symlink is answered with the host's: of the type asked for, it is the name's inode now", async () => {
    const hostLink = () => {
      fs.symlinkSync('host-target', P('same.l'));
      fs.renameSync(P('same.l'), P('same'));
    };
    hook.after = (k) => {
      if (k !== 'symlinkat') return;
      hook.after = null;
      hostLink();
    };
    let e;
    try {
      e = await pfs.symlink(ctx, B('mine'), 1n, B('same'));
    } finally {
      hook.after = null;
    }
    // (the attributes first: reading the link sets its atime)
    expectHostAttr(e.attr, P('same'));
    expect(fs.readlinkSync(P('same'))).toBe('host-target');
  });

  it('without a race the four make what they were asked for (the hook changes nothing else)', async () => {
    fs.writeFileSync(P('src'), '');
    const src = found(await pfs.lookup(ctx, 1n, B('src')));
    expectHostAttr((await pfs.symlink(ctx, B('t'), 1n, B('a'))).attr, P('a'));
    expectHostAttr((await pfs.mknod(ctx, 1n, B('b'), S_IFIFO | 0o600, NODEV, 0)).attr, P('b'));
    expectHostAttr((await pfs.mkdir(ctx, 1n, B('c'), 0o700, 0)).attr, P('c'));
    expect((await pfs.link(ctx, src.nodeid, 1n, B('d'))).nodeid).toBe(src.nodeid);
  });
});
