/**
 * virtiofsd's --xattrmap, --security-label, --announce-submounts and --preserve-noatime in the
 * filesystem core: PassthroughFs on a temp dir (../helpers/fs-fixture.ts), every effect checked on
 * the host (l*xattr on the host path, stat times, a tmpfs mounted below the root).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseXattrMap } from '../../src/fs/xattr-map.js';
import type { Context, DirEntry, Entry, XattrReply } from '../../src/fs/types.js';
import { sys, O_NOATIME, O_RDONLY, O_RDWR, S_IFIFO } from '../../src/sys/syscalls.js';
import { errnoOf, found } from '../helpers/errno.js';
import { B, ctx, hostGet, isRoot, look, P, pfs, remakeFs, useFs } from '../helpers/fs-fixture.js';

useFs();

const value = (r: XattrReply): string => {
  if (!('value' in r)) throw new Error('expected a value reply');
  return r.value.toString();
};
const hostList = (p: string): string[] => {
  const b = Buffer.alloc(65536);
  return b.subarray(0, sys.listxattr(B(p), b)).toString().split('\0').filter(Boolean).sort();
};
const names = (r: XattrReply): string[] => value(r).split('\0').filter(Boolean).sort();

async function withMap(spec: string): Promise<void> {
  await remakeFs({ xattrmap: parseXattrMap(spec) });
  await pfs.init({ writeback: false, killPrivV2: false, passthrough: false });
}

describe('--xattrmap in the core', () => {
  it("':map::user.virtiofs.:': client trusted./security. live under user.virtiofs. on the host and read back under their names", async () => {
    await withMap(':map::user.virtiofs.:');
    fs.writeFileSync(P('f'), '');
    sys.lsetxattr(B(P('f')), B('user.hostonly'), B('h'), 0);
    const f = (await look('f')).nodeid;
    await pfs.setxattr(ctx, f, B('trusted.overlay.opaque'), B('y'), 0);
    await pfs.setxattr(ctx, f, B('security.selinux'), B('label'), 0);
    expect(hostGet(P('f'), 'user.virtiofs.trusted.overlay.opaque')).toBe('y');
    expect(hostGet(P('f'), 'user.virtiofs.security.selinux')).toBe('label');
    expect(hostGet(P('f'), 'trusted.overlay.opaque')).toBe('ENODATA');
    expect(value(found(await pfs.getxattr(ctx, f, B('trusted.overlay.opaque'), 100)))).toBe('y');
    // the host's own attribute is hidden; the size probe answers the client list's length
    const size = await pfs.listxattr(ctx, f, 0);
    const list = await pfs.listxattr(ctx, f, 1000);
    expect(names(list)).toEqual(['security.selinux', 'trusted.overlay.opaque']);
    expect('size' in size && size.size).toBe(value(list).length);
    await pfs.removexattr(ctx, f, B('trusted.overlay.opaque'));
    expect(hostList(P('f'))).toEqual(['user.hostonly', 'user.virtiofs.security.selinux']);
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.hostonly'), 100))).toBe('ENODATA');
  });

  it('bad and unsupported rules refuse before the host is asked', async () => {
    await withMap('/prefix/all/trusted./user.virtiofs./ /bad/client/user.virtiofs.// /unsupported/all/security.// /ok/all///');
    fs.writeFileSync(P('f'), '');
    const f = (await look('f')).nodeid;
    expect(await errnoOf(pfs.setxattr(ctx, f, B('user.virtiofs.trusted.x'), B('v'), 0))).toBe('EPERM');
    expect(await errnoOf(pfs.removexattr(ctx, f, B('user.virtiofs.trusted.x')))).toBe('EPERM');
    expect(await errnoOf(pfs.getxattr(ctx, f, B('user.virtiofs.trusted.x'), 10))).toBe('ENODATA');
    // ENOTSUP, which Linux spells EOPNOTSUPP
    for (const call of [() => pfs.setxattr(ctx, f, B('security.x'), B('v'), 0), () => pfs.getxattr(ctx, f, B('security.x'), 10), () => pfs.removexattr(ctx, f, B('security.x'))]) {
      expect(await errnoOf(call)).toBe('EOPNOTSUPP');
    }
    expect(hostList(P('f'))).toEqual([]);
    await pfs.setxattr(ctx, f, B('user.plain'), B('p'), 0);
    expect(hostGet(P('f'), 'user.plain')).toBe('p');
    // a mapped name longer than the host allows is the host's answer
    expect(await errnoOf(pfs.setxattr(ctx, f, B(`trusted.${'n'.repeat(240)}`), B('v'), 0))).toBe('ERANGE');
  });
});

describe('--security-label in the core', () => {
  const labelled = (name: string): Context => ({ ...ctx, secctx: { name: B(name), value: B('system_u:object_r:tmp_t:s0') } });

  it('create, mkdir, mknod, symlink and tmpfile set the label on the new node before answering', async () => {
    const c = labelled('security.selinux');
    const created = await pfs.create(c, 1n, B('f'), 0o100644, O_RDWR, 0o022);
    await pfs.mkdir(c, 1n, B('d'), 0o755, 0o022);
    await pfs.mknod(c, 1n, B('p'), S_IFIFO | 0o644, { major: 0, minor: 0 }, 0o022);
    await pfs.symlink(c, B('target'), 1n, B('l'));
    for (const n of ['f', 'd', 'p', 'l']) expect([n, hostGet(P(n), 'security.selinux')]).toEqual([n, 'system_u:object_r:tmp_t:s0']);
    const t = await pfs.tmpfile(c, 1n, 0o100600, O_RDWR, 0);
    // the tmpfile has no name: its label is read through the core
    expect(value(found(await pfs.getxattr(ctx, t.entry.nodeid, B('security.selinux'), 100)))).toBe('system_u:object_r:tmp_t:s0');
    // without a label nothing is set
    await pfs.mkdir(ctx, 1n, B('plain'), 0o755, 0);
    expect(hostGet(P('plain'), 'security.selinux')).toBe('ENODATA');
    await pfs.release(ctx, created.entry.nodeid, created.open.fh, 0, 0n, false);
    await pfs.release(ctx, t.entry.nodeid, t.open.fh, 0, 0n, false);
  });

  it('the label name goes through --xattrmap', async () => {
    await withMap(':map::user.virtiofs.:');
    await pfs.mkdir(labelled('security.selinux'), 1n, B('d'), 0o755, 0);
    expect(hostGet(P('d'), 'user.virtiofs.security.selinux')).toBe('system_u:object_r:tmp_t:s0');
    expect(hostGet(P('d'), 'security.selinux')).toBe('ENODATA');
  });

  it('a label the host refuses fails the request and leaves no node behind', async () => {
    const c = labelled('nonsense.namespace');
    expect(await errnoOf(pfs.create(c, 1n, B('f'), 0o100644, O_RDWR, 0))).toBe('EOPNOTSUPP');
    expect(await errnoOf(pfs.mkdir(c, 1n, B('d'), 0o755, 0))).toBe('EOPNOTSUPP');
    expect(await errnoOf(pfs.symlink(c, B('t'), 1n, B('l')))).toBe('EOPNOTSUPP');
    expect(fs.readdirSync(P('.'))).toEqual([]);
    // refused by the map: EPERM, nothing left either
    await withMap(':bad:client:security.:: :ok:all:::');
    expect(await errnoOf(pfs.mknod(labelled('security.selinux'), 1n, B('p'), S_IFIFO | 0o644, { major: 0, minor: 0 }, 0))).toBe('EPERM');
    expect(fs.readdirSync(P('.'))).toEqual([]);
  });
});

describe.skipIf(!isRoot)('--announce-submounts in the core', () => {
  /** a tmpfs mounted on root/mnt for the test's duration */
  async function withTmpfs(fn: () => Promise<void>): Promise<void> {
    fs.mkdirSync(P('mnt'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'hfs-sub', P('mnt')]);
    try {
      fs.mkdirSync(P('mnt/inner'));
      fs.writeFileSync(P('mnt/file'), 'x');
      await fn();
    } finally {
      await pfs.destroy();
      execFileSync('umount', ['-l', P('mnt')]);
    }
  }
  const flagged = async (rel: string): Promise<boolean> => (await look(rel)).submount === true;

  it('a directory on another mount than its parent is marked, nothing else is', async () => {
    await withTmpfs(async () => {
      await remakeFs({ announceSubmounts: true });
      await pfs.init({ writeback: false, killPrivV2: false, passthrough: false, submounts: true });
      fs.mkdirSync(P('plain'));
      expect(await flagged('mnt')).toBe(true);
      expect(await flagged('plain')).toBe(false);
      expect(await flagged('mnt/inner')).toBe(false);
      expect(await flagged('mnt/file')).toBe(false);
      // readdirplus entries of the root carry it too
      const dir = await pfs.opendir(ctx, 1n, O_RDONLY);
      const seen: Record<string, boolean> = {};
      await pfs.readdirplus(ctx, 1n, dir.fh, 0n, 65536, (d: DirEntry, e: Entry | null) => {
        if (e) seen[d.name.toString()] = e.submount === true;
        return true;
      });
      expect(seen).toMatchObject({ mnt: true, plain: false });
    });
  });

  it('not marked without the option, nor when the client did not agree to FUSE_SUBMOUNTS', async () => {
    await withTmpfs(async () => {
      await pfs.init({ writeback: false, killPrivV2: false, passthrough: false, submounts: true });
      expect(await flagged('mnt')).toBe(false);
      await remakeFs({ announceSubmounts: true });
      await pfs.init({ writeback: false, killPrivV2: false, passthrough: false, submounts: false });
      expect(await flagged('mnt')).toBe(false);
    });
  });
});

describe('--preserve-noatime in the core', () => {
  const OLD = new Date('2001-09-09T01:46:40Z');
  /** read the file through the core with the client's open flags; the host atime afterwards (ms) */
  async function readWith(flags: number): Promise<number> {
    fs.writeFileSync(P('f'), 'data');
    fs.utimesSync(P('f'), OLD, OLD);
    const n = (await look('f')).nodeid;
    const o = await pfs.open(ctx, n, flags);
    expect((await pfs.read(ctx, n, o.fh, 0, 10)).toString()).toBe('data');
    await pfs.release(ctx, n, o.fh, 0, 0n, false);
    return fs.statSync(P('f')).atimeMs;
  }

  it('the client O_NOATIME is dropped by default (the host atime moves) and kept with the option', async () => {
    // the host filesystem updates atime on a read of a file whose atime is older than its mtime (relatime)
    expect(await readWith(O_RDONLY)).toBeGreaterThan(OLD.getTime());
    expect(await readWith(O_RDONLY | O_NOATIME)).toBeGreaterThan(OLD.getTime());
    await remakeFs({ preserveNoatime: true });
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: false });
    expect(await readWith(O_RDONLY | O_NOATIME)).toBe(OLD.getTime());
    expect(await readWith(O_RDONLY)).toBeGreaterThan(OLD.getTime());
  });
});
