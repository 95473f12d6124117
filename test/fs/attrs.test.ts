/**
 * Attributes of the filesystem core: getattr/statx, setattr (mode, owner, size, times, killpriv),
 * readlink, statfs, access.
 * PassthroughFs driven through the FileSystem interface on a temp dir (../helpers/fs-fixture.ts),
 * every result compared with what the host says (fs.*Sync on the same tree, or the sys addon).
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID, WRITE_KILL_SUIDGID, type Context, type Timespec } from '../../src/fs/types.js';
import { sys, AT_FDCWD, O_RDWR, S_IFIFO, S_IFREG } from '../../src/sys/syscalls.js';
import { errnoOf, errnoOfSync } from '../helpers/errno.js';
import {
  B, ctx, other, isRoot, root, pfs, P, look, openFile, tsNs, expectHostAttr, setattrIn, useFs,
} from '../helpers/fs-fixture.js';

useFs();

describe('getattr, statx, setattr', () => {
  it('getattr equals the host lstat in every field: file, dir, symlink, fifo, root', async () => {
    fs.writeFileSync(P('f'), 'x'.repeat(5000));
    fs.mkdirSync(P('d'));
    fs.symlinkSync('/somewhere/else', P('l'));
    sys.mknodat(AT_FDCWD, B(P('p')), S_IFIFO | 0o640, 0n);
    for (const n of ['f', 'd', 'l', 'p']) {
      const e = await look(n);
      expectHostAttr((await pfs.getattr(ctx, e.nodeid)).attr, P(n));
      expectHostAttr((await pfs.statx(ctx, e.nodeid, undefined, 0, 0x7ff)).attr, P(n));
    }
    expectHostAttr((await pfs.getattr(ctx, 1n)).attr, root);
    expect(await errnoOf(pfs.getattr(ctx, 31337n))).toBe('ESTALE');
  });

  it('getattr through an fh works after the file is unlinked (nlink 0)', async () => {
    fs.writeFileSync(P('f'), 'abc');
    const { nodeid, fh } = await openFile('f');
    await pfs.unlink(ctx, 1n, B('f'));
    const a = (await pfs.getattr(ctx, nodeid, fh)).attr;
    expect(a.nlink).toBe(0);
    expect(a.size).toBe(3n);
    const s = (await pfs.statx(ctx, nodeid, fh, 0, 0x7ff)).attr;
    expect(s.nlink).toBe(0);
  });

  it('setattr mode', async () => {
    fs.writeFileSync(P('f'), '');
    const e = await look('f');
    const r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_MODE, mode: S_IFREG | 0o4751 }));
    expect(r.attr.mode & 0o7777).toBe(0o4751);
    expectHostAttr(r.attr, P('f'));
  });

  it.runIf(isRoot)('setattr uid and gid, each alone and both', async () => {
    fs.writeFileSync(P('f'), '');
    const e = await look('f');
    let r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_UID | FATTR_GID, uid: 1234, gid: 5678 }));
    expect([r.attr.uid, r.attr.gid]).toEqual([1234, 5678]);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_GID, uid: 1, gid: 99 }));
    expect([r.attr.uid, r.attr.gid]).toEqual([1234, 99]);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_UID, uid: 77, gid: 1 }));
    expect([r.attr.uid, r.attr.gid]).toEqual([77, 99]);
    expectHostAttr(r.attr, P('f'));
    // a symlink itself
    fs.symlinkSync('f', P('l'));
    const l = await look('l');
    r = await pfs.setattr(ctx, l.nodeid, setattrIn({ valid: FATTR_UID | FATTR_GID, uid: 11, gid: 12 }));
    expect(fs.lstatSync(P('l')).uid).toBe(11);
    expect(fs.statSync(P('f')).uid).toBe(77);
  });

  it('setattr size grows and shrinks, with and without an fh; EISDIR on a directory', async () => {
    fs.writeFileSync(P('f'), 'abcdef');
    const e = await look('f');
    let r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_SIZE, size: 3n }));
    expect(r.attr.size).toBe(3n);
    expect(fs.readFileSync(P('f'), 'utf8')).toBe('abc');
    const o = await pfs.open(ctx, e.nodeid, O_RDWR);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_SIZE | FATTR_FH, fh: o.fh, size: 10n }));
    expect(r.attr.size).toBe(10n);
    expectHostAttr(r.attr, P('f'));
    expect(fs.readFileSync(P('f'))).toEqual(Buffer.from('abc\0\0\0\0\0\0\0'));
    fs.mkdirSync(P('d'));
    const d = await look('d');
    expect(await errnoOf(pfs.setattr(ctx, d.nodeid, setattrIn({ valid: FATTR_SIZE, size: 0n }))))
      .toBe(errnoOfSync(() => fs.truncateSync(P('d'), 0)));
    // an fh of another node
    expect(await errnoOf(pfs.setattr(ctx, d.nodeid, setattrIn({ valid: FATTR_SIZE | FATTR_FH, fh: o.fh, size: 0n })))).toBe('EBADF');
  });

  it('setattr size on a read-only (0444) file as root', async () => {
    fs.writeFileSync(P('f'), 'abcdef', { mode: 0o444 });
    fs.chmodSync(P('f'), 0o444);
    const e = await look('f');
    const want = errnoOfSync(() => fs.truncateSync(P('f'), 6));
    expect(await errnoOf(pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_SIZE, size: 1n })))).toBe(want);
  });

  it('setattr atime/mtime: explicit nanoseconds, NOW, and omitted', async () => {
    fs.writeFileSync(P('f'), '');
    const e = await look('f');
    const at: Timespec = { sec: 1_600_000_000n, nsec: 123_456_789 };
    const mt: Timespec = { sec: 1_500_000_000n, nsec: 987_654_321 };
    let r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_ATIME | FATTR_MTIME, atime: at, mtime: mt }));
    expect(tsNs(r.attr.atime)).toBe(1_600_000_000_123_456_789n);
    expect(tsNs(r.attr.mtime)).toBe(1_500_000_000_987_654_321n);
    expectHostAttr(r.attr, P('f'));
    // only mtime: atime is left alone
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_MTIME, atime: mt, mtime: { sec: 1_000_000_000n, nsec: 1 } }));
    expect(tsNs(r.attr.atime)).toBe(1_600_000_000_123_456_789n);
    expect(tsNs(r.attr.mtime)).toBe(1_000_000_000_000_000_001n);
    // NOW: the server's clock, whatever the given value
    const before = BigInt(Date.now() - 2000) * 1_000_000n;
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_MTIME | FATTR_MTIME_NOW, mtime: mt }));
    expect(tsNs(r.attr.mtime)).toBeGreaterThan(before);
    expect(tsNs(r.attr.atime)).toBe(1_600_000_000_123_456_789n);
    r = await pfs.setattr(ctx, e.nodeid, setattrIn({ valid: FATTR_ATIME_NOW }));
    expect(tsNs(r.attr.atime)).toBeGreaterThan(before);
    expectHostAttr(r.attr, P('f'));
  });

  it('setattr mode on a symlink: as the host (lchmod)', async () => {
    fs.symlinkSync('x', P('l'));
    const l = await look('l');
    const want = errnoOfSync(() => sys.fchmodat2(AT_FDCWD, B(P('l')), 0o600, 0x100 /* AT_SYMLINK_NOFOLLOW */));
    expect(await errnoOf(pfs.setattr(ctx, l.nodeid, setattrIn({ valid: FATTR_MODE, mode: 0o600 })))).toBe(want);
  });

  it('HANDLE_KILLPRIV_V2: write and truncate with KILL_SUIDGID clear setuid and setgid (group-exec)', async () => {
    await pfs.init({ writeback: false, killPrivV2: true, passthrough: false });
    fs.writeFileSync(P('f'), 'x');
    fs.chmodSync(P('f'), 0o6755);
    const { nodeid, fh } = await openFile('f');
    await pfs.write(ctx, nodeid, fh, 0, B('y'), 0);
    expect(fs.statSync(P('f')).mode & 0o7777).toBe(0o6755);
    await pfs.write(ctx, nodeid, fh, 0, B('y'), WRITE_KILL_SUIDGID);
    expect(fs.statSync(P('f')).mode & 0o7777).toBe(0o755);
    fs.chmodSync(P('f'), 0o6745); // setgid without group-exec is mandatory locking, kept
    await pfs.setattr(ctx, nodeid, setattrIn({ valid: FATTR_SIZE | FATTR_KILL_SUIDGID, size: 0n }));
    expect(fs.statSync(P('f')).mode & 0o7777).toBe(0o2745);
  });

  it('setattr times on a symlink change the link, not its target', async () => {
    fs.writeFileSync(P('f'), '');
    fs.symlinkSync('f', P('l'));
    const fm = fs.statSync(P('f'), { bigint: true }).mtimeNs;
    const l = await look('l');
    const r = await pfs.setattr(ctx, l.nodeid, setattrIn({ valid: FATTR_MTIME, mtime: { sec: 1_234_567_890n, nsec: 5 } }));
    expect(tsNs(r.attr.mtime)).toBe(1_234_567_890_000_000_005n);
    expect(fs.lstatSync(P('l'), { bigint: true }).mtimeNs).toBe(1_234_567_890_000_000_005n);
    expect(fs.statSync(P('f'), { bigint: true }).mtimeNs).toBe(fm);
  });
});

describe('readlink', () => {
  it('readlink returns targets verbatim, EINVAL on a non-symlink', async () => {
    const targets = ['/etc/passwd', '../../../../outside', 'a//b/', '/'];
    for (const [i, t] of targets.entries()) fs.symlinkSync(t, P(`l${i}`));
    const bin = Buffer.from([0x2f, 0xff, 0xfe]);
    fs.symlinkSync(bin, Buffer.from(P('lbin')));
    for (const [i, t] of targets.entries()) expect((await pfs.readlink(ctx, (await look(`l${i}`)).nodeid)).toString()).toBe(t);
    expect((await pfs.readlink(ctx, (await look('lbin')).nodeid)).equals(bin)).toBe(true);
    fs.writeFileSync(P('f'), '');
    expect(await errnoOf(pfs.readlink(ctx, (await look('f')).nodeid))).toBe(errnoOfSync(() => fs.readlinkSync(P('f'))));
    expect(await errnoOf(pfs.readlink(ctx, 1n))).toBe(errnoOfSync(() => fs.readlinkSync(root)));
  });
});

describe('statfs, syncfs', () => {
  it('statfs equals the host statfs', async () => {
    const s = await pfs.statfs(ctx, 1n);
    const h = fs.statfsSync(root, { bigint: true });
    expect(BigInt(s.bsize)).toBe(h.bsize);
    expect(s.blocks).toBe(h.blocks);
    expect(s.files).toBe(h.files);
    expect(s.namelen).toBe(255);
    expect(Number(s.bfree - h.bfree)).toBeLessThan(1024);
    expect(s.bavail).toBeLessThanOrEqual(s.bfree);
    fs.writeFileSync(P('f'), '');
    expect((await pfs.statfs(ctx, (await look('f')).nodeid)).blocks).toBe(h.blocks);
    await pfs.syncfs(ctx, 1n);
  });
});

describe('access', () => {
  it('as the host for the server credentials', async () => {
    fs.writeFileSync(P('f'), '');
    fs.chmodSync(P('f'), 0o644);
    const f = (await look('f')).nodeid;
    for (const m of [fs.constants.F_OK, fs.constants.R_OK, fs.constants.W_OK, fs.constants.X_OK, fs.constants.R_OK | fs.constants.X_OK]) {
      expect([m, await errnoOf(pfs.access(ctx, f, m))]).toEqual([m, errnoOfSync(() => fs.accessSync(P('f'), m))]);
    }
    fs.chmodSync(P('f'), 0o744);
    expect(await errnoOf(pfs.access(ctx, f, fs.constants.X_OK))).toBe('OK');
  });

  it.runIf(isRoot)('for another requester: owner, group and other bits', async () => {
    fs.writeFileSync(P('f'), '');
    fs.chownSync(P('f'), 1234, 5678);
    const f = (await look('f')).nodeid;
    const stranger: Context = { uid: 4000, gid: 4000, pid: 1, unique: 1n };
    const member: Context = { uid: 4001, gid: 5678, pid: 1, unique: 1n };
    fs.chmodSync(P('f'), 0o640);
    expect(await errnoOf(pfs.access(other, f, fs.constants.R_OK | fs.constants.W_OK))).toBe('OK');
    expect(await errnoOf(pfs.access(other, f, fs.constants.X_OK))).toBe('EACCES');
    expect(await errnoOf(pfs.access(member, f, fs.constants.R_OK))).toBe('OK');
    expect(await errnoOf(pfs.access(member, f, fs.constants.W_OK))).toBe('EACCES');
    expect(await errnoOf(pfs.access(stranger, f, fs.constants.R_OK))).toBe('EACCES');
    expect(await errnoOf(pfs.access(stranger, f, fs.constants.F_OK))).toBe('OK');
  });
});
