/**
 * Extended attributes of the filesystem core: set, get, list, remove, on every kind of node.
 * PassthroughFs driven through the FileSystem interface on a temp dir (../helpers/fs-fixture.ts),
 * every result compared with what the host says (fs.*Sync on the same tree, or the sys addon).
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { E, FsError } from '../../src/errors.js';
import { type XattrReply } from '../../src/fs/types.js';
import { sys, AT_FDCWD, O_RDWR, S_IFIFO, XATTR_CREATE, XATTR_REPLACE } from '../../src/sys/syscalls.js';
import { errnoOf, errnoOfSync, found } from '../helpers/errno.js';
import { B, ctx, hostGet, isRoot, pfs, P, look, remakeFs, useFs } from '../helpers/fs-fixture.js';

useFs();

function value(r: XattrReply): Buffer {
  if (!('value' in r)) throw new Error('expected a value reply');
  return r.value;
}

function size(r: XattrReply): number {
  if (!('size' in r)) throw new Error('expected a size reply');
  return r.size;
}

describe('xattrs', () => {
  it('set, get (size probe, value, ERANGE), list, remove, ENODATA; flags as the host', async () => {
    fs.writeFileSync(P('f'), '');
    const f = (await look('f')).nodeid;
    await pfs.setxattr(ctx, f, B('user.a'), B('alpha'), 0);
    await pfs.setxattr(ctx, f, B('user.empty'), Buffer.alloc(0), 0);
    expect(hostGet(P('f'), 'user.a')).toBe('alpha');
    expect(size(found(await pfs.getxattr(ctx, f, B('user.a'), 0)))).toBe(5);
    expect(value(found(await pfs.getxattr(ctx, f, B('user.a'), 5))).toString()).toBe('alpha');
    expect(value(found(await pfs.getxattr(ctx, f, B('user.a'), 100))).toString()).toBe('alpha');
    expect(value(found(await pfs.getxattr(ctx, f, B('user.empty'), 10))).length).toBe(0);
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.a'), 4))).toBe(errnoOfSync(() => sys.lgetxattr(B(P('f')), B('user.a'), Buffer.alloc(4))));
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.a'), 4))).toBe('ERANGE');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.none'), 0))).toBe(errnoOfSync(() => sys.lgetxattr(B(P('f')), B('user.none'), null)));
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.none'), 0))).toBe('ENODATA');
    const listSize = size(await pfs.listxattr(ctx, f, 0));
    expect(listSize).toBe(sys.listxattr(B(P('f')), null));
    const list = value(await pfs.listxattr(ctx, f, listSize)).toString().split('\0').filter(Boolean);
    expect(list.filter((n) => n.startsWith('user.')).sort()).toEqual(['user.a', 'user.empty']);
    expect(await errnoOf(pfs.listxattr(ctx, f, 3))).toBe('ERANGE');
    expect(await errnoOf(pfs.setxattr(ctx, f, B('user.a'), B('x'), XATTR_CREATE)))
      .toBe(errnoOfSync(() => sys.lsetxattr(B(P('f')), B('user.a'), B('x'), XATTR_CREATE)));
    expect(await errnoOf(pfs.setxattr(ctx, f, B('user.new'), B('x'), XATTR_REPLACE)))
      .toBe(errnoOfSync(() => sys.lsetxattr(B(P('f')), B('user.new'), B('x'), XATTR_REPLACE)));
    await pfs.setxattr(ctx, f, B('user.a'), B('beta'), XATTR_REPLACE);
    expect(hostGet(P('f'), 'user.a')).toBe('beta');
    await pfs.removexattr(ctx, f, B('user.a'));
    expect(hostGet(P('f'), 'user.a')).toBe('ENODATA');
    expect(await errnoOf(pfs.removexattr(ctx, f, B('user.a')))).toBe(errnoOfSync(() => sys.removexattr(B(P('f')), B('user.a'))));
    expect(await errnoOf(pfs.getxattr(ctx, f, B(''), 0))).toBe('EINVAL');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.' + 'n'.repeat(251)), 0))).toBe(errnoOfSync(() => sys.lgetxattr(B(P('f')), B('user.' + 'n'.repeat(251)), null)));
    expect(await errnoOf(pfs.setxattr(ctx, f, B('nonamespace'), B('v'), 0))).toBe(errnoOfSync(() => sys.lsetxattr(B(P('f')), B('nonamespace'), B('v'), 0)));
  });

  it('a missing attribute is answered as a value: ENODATA resolves as an FsError, by path and through an open file', async () => {
    fs.writeFileSync(P('f'), '');
    const f = (await look('f')).nodeid;
    const byPath = await pfs.getxattr(ctx, f, B('security.capability'), 0);
    expect(byPath).toBeInstanceOf(FsError);
    expect((byPath as FsError).errno).toBe(E.ENODATA);
    const o = await pfs.open(ctx, f, O_RDWR);
    try {
      const byFd = await pfs.getxattr(ctx, f, B('user.none'), 64);
      expect(byFd).toBeInstanceOf(FsError);
      expect((byFd as FsError).errno).toBe(E.ENODATA);
    } finally {
      await pfs.release(ctx, f, o.fh, O_RDWR, 0n, false);
    }
  });

  it('while the file is open (read through its fd): values, ENODATA, ERANGE and host changes as the host; after release as before', async () => {
    fs.writeFileSync(P('o'), 'data');
    const f = (await look('o')).nodeid;
    const o = await pfs.open(ctx, f, O_RDWR);
    expect(await errnoOf(pfs.getxattr(ctx, f, B('security.capability'), 0))).toBe(errnoOfSync(() => sys.lgetxattr(B(P('o')), B('security.capability'), null)));
    sys.lsetxattr(B(P('o')), B('user.k'), B('one'), 0);
    expect(size(found(await pfs.getxattr(ctx, f, B('user.k'), 0)))).toBe(3);
    expect(value(found(await pfs.getxattr(ctx, f, B('user.k'), 3))).toString()).toBe('one');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.k'), 2))).toBe('ERANGE');
    sys.lsetxattr(B(P('o')), B('user.k'), B('second'), 0);
    expect(value(found(await pfs.getxattr(ctx, f, B('user.k'), 64))).toString()).toBe('second');
    await pfs.release(ctx, f, o.fh, O_RDWR, 0n, false);
    expect(value(found(await pfs.getxattr(ctx, f, B('user.k'), 64))).toString()).toBe('second');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.none'), 0))).toBe('ENODATA');
  });

  it('on a directory, a symlink (user.* EPERM as the host) and a FIFO; trusted.* as root', async () => {
    fs.mkdirSync(P('d'));
    fs.symlinkSync('d', P('l'));
    sys.mknodat(AT_FDCWD, B(P('p')), S_IFIFO | 0o600, 0n);
    const d = (await look('d')).nodeid;
    const l = (await look('l')).nodeid;
    const p = (await look('p')).nodeid;
    await pfs.setxattr(ctx, d, B('user.k'), B('dir'), 0);
    expect(hostGet(P('d'), 'user.k')).toBe('dir');
    for (const [id, rel] of [[l, 'l'], [p, 'p']] as const) {
      expect(await errnoOf(pfs.setxattr(ctx, id, B('user.k'), B('v'), 0))).toBe(errnoOfSync(() => sys.lsetxattr(B(P(rel)), B('user.k'), B('v'), 0)));
      if (isRoot) {
        await pfs.setxattr(ctx, id, B('trusted.k'), B(`t-${rel}`), 0);
        expect(hostGet(P(rel), 'trusted.k')).toBe(`t-${rel}`);
        expect(value(found(await pfs.getxattr(ctx, id, B('trusted.k'), 100))).toString()).toBe(`t-${rel}`);
        expect(value(await pfs.listxattr(ctx, id, 1000)).toString()).toContain('trusted.k\0');
        await pfs.removexattr(ctx, id, B('trusted.k'));
        expect(hostGet(P(rel), 'trusted.k')).toBe('ENODATA');
      }
    }
    // the symlink's target was never touched
    expect(hostGet(P('d'), 'trusted.k')).toBe('ENODATA');
  });

  it('xattr: false answers ENOSYS', async () => {
    await remakeFs({ xattr: false });
    expect(await errnoOf(pfs.getxattr(ctx, 1n, B('user.a'), 0))).toBe('ENOSYS');
    expect(await errnoOf(pfs.listxattr(ctx, 1n, 0))).toBe('ENOSYS');
  });
});
