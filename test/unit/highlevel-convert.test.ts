import { describe, expect, it } from 'vitest';
import { statArray, statfsToFuse, timespecToMs, attrToFuseStat } from '../../src/frontends/highlevel/fuse-stat.js';
import { encodeDev32 } from '../../src/sys/stat.js';
import { utimensToSetattr } from '../../src/frontends/highlevel/adapter.js';
import { buildOptions } from '../../src/frontends/highlevel/mount.js';
import { FATTR_ATIME, FATTR_ATIME_NOW, FATTR_MTIME, FATTR_MTIME_NOW, type Attr } from '../../src/fs/types.js';
import { pino } from 'pino';

const attr: Attr = {
  ino: 0x1_2345_6789n, size: 2n ** 40n + 5n, blocks: 8n,
  atime: { sec: 1_700_000_000n, nsec: 123_456_789 }, mtime: { sec: -5n, nsec: 0 }, ctime: { sec: 0n, nsec: 999_999 },
  btime: null, mode: 0o100644, nlink: 2, uid: 1000, gid: 100, rdevMajor: 8, rdevMinor: 300, blksize: 4096, attributes: 0n,
};

describe('fuse-native conversions', () => {
  it('stat: ms times (negative clamped), 32-bit ino, 53-bit size, dev_t encoding', () => {
    const st = attrToFuseStat(attr);
    expect(st.atime).toBe(1_700_000_000_123);
    expect(st.mtime).toBe(0);
    expect(st.ctime).toBe(0);
    expect(st.ino).toBe(0x2345_6789);
    expect(st.size).toBe(2 ** 40 + 5);
    expect(st.rdev).toBe(encodeDev32(8, 300));
    expect(encodeDev32(8, 1)).toBe(0x801); // makedev(8, 1)
    const ints = statArray(st);
    expect(ints[3]).toBe(5);
    expect(ints[4]).toBe(2 ** 8); // high half of the size
    expect(ints[12]! + ints[13]! * 2 ** 32).toBe(1_700_000_000_123);
  });

  it('statfs: block counts beyond 32 bits scale the fragment size', () => {
    const s = statfsToFuse({ blocks: 2n ** 34n, bfree: 2n ** 33n, bavail: 2n ** 33n, files: 2n ** 40n, ffree: 7n, bsize: 4096, frsize: 4096, namelen: 255 });
    expect(s.blocks * s.frsize).toBe(2 ** 34 * 4096);
    expect(s.blocks).toBeLessThanOrEqual(0xffff_ffff);
    expect(s.bfree * s.frsize).toBe(2 ** 33 * 4096);
    expect(s.files).toBe(0xffff_ffff);
    expect(s.namemax).toBe(255);
  });

  it('utimens: the UTIME_NOW/OMIT sentinel means now; a time sets atime and mtime', () => {
    expect(utimensToSetattr(1073).valid).toBe(FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW);
    const s = utimensToSetattr(1_600_000_000_250);
    expect(s.valid).toBe(FATTR_ATIME | FATTR_MTIME);
    expect(s.mtime).toEqual({ sec: 1_600_000_000n, nsec: 250_000_000 });
    expect(s.atime).toEqual(s.mtime);
  });

  it('mount options: hard_remove, default_permissions, escaped fsname', () => {
    const log = pino({ level: 'silent' });
    const o = buildOptions({ log, fsname: '/srv/a,b' }, 1);
    expect(o.startsWith('-o')).toBe(true);
    expect(o).toContain('hard_remove');
    expect(o).toContain('default_permissions');
    expect(o).toContain('fsname=/srv/a\\,b');
    expect(o).not.toContain('allow_other');
    expect(buildOptions({ log, defaultPermissions: false, allowOther: true }, 0)).toMatch(/allow_other/);
    expect(buildOptions({ log, defaultPermissions: false }, 0)).not.toMatch(/default_permissions/);
    expect(buildOptions({ log, fsname: 'x'.repeat(2000) }, 1).length).toBeLessThan(1024);
  });
});
