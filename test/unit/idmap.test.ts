import { describe, expect, it } from 'vitest';
import { E, failure, FsError } from '../../src/errors.js';
import { DefaultFileSystem } from '../../src/fs/filesystem.js';
import { IdMapFs } from '../../src/fs/idmap-fs.js';
import { buildIdMap, guestToHost, hostToGuest, ID_MAX, IdMapError, parseIdMapRule } from '../../src/fs/idmap.js';
import { FATTR_GID, FATTR_MODE, FATTR_UID, type Attr, type Context, type Entry, type SetattrIn } from '../../src/fs/types.js';
import { mulberry32 } from '../helpers/prng.js';
import { found } from '../helpers/errno.js';

describe('parseIdMapRule', () => {
  it('reads every virtiofsd rule type', () => {
    expect(parseIdMapRule('map:1000:2000:10')).toEqual({ kind: 'map', source: 1000, target: 2000, count: 10 });
    expect(parseIdMapRule('guest:0:5:1')).toEqual({ kind: 'guest', source: 0, target: 5, count: 1 });
    expect(parseIdMapRule('host:5:0:1')).toEqual({ kind: 'host', source: 5, target: 0, count: 1 });
    expect(parseIdMapRule('squash-guest:0:1000:4294967295')).toEqual({ kind: 'squash-guest', source: 0, target: 1000, count: ID_MAX });
    expect(parseIdMapRule('squash-host:0:65534:100')).toEqual({ kind: 'squash-host', source: 0, target: 65534, count: 100 });
    expect(parseIdMapRule('forbid-guest:0:1')).toEqual({ kind: 'forbid-guest', source: 0, count: 1 });
    // as Rust's u32::from_str: a leading '+' and leading zeros are numbers too
    expect(parseIdMapRule('map:+007:08:1')).toEqual({ kind: 'map', source: 7, target: 8, count: 1 });
  });

  it('refuses unknown types, wrong field counts and non-ids with one line naming the rule', () => {
    for (const bad of ['', 'map', 'map:1:2', 'map:1:2:3:4', 'forbid-guest:1:2:3', 'squash:0:1:1', 'MAP:1:2:3', 'map:-1:2:3',
      'map:1:2:0x3', 'map:1: 2:3', 'map:1:2:4294967296', 'map:1:2:99999999999999999999', 'map:1:2:', ':map:1:2:3', 'map:1:2:3\n']) {
      let err: unknown;
      try {
        parseIdMapRule(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(IdMapError);
      if (!bad.includes('\n')) expect((err as Error).message).not.toContain('\n');
      expect((err as Error).message.startsWith(`'${bad}'`)).toBe(true);
    }
  });

  it('fuzz: random input either parses to ids in range or throws IdMapError, never anything else', () => {
    const rnd = mulberry32(0x1d3a9);
    const alphabet = ['map', 'guest', 'host', 'squash-guest', 'squash-host', 'forbid-guest', ':', '0', '1', '9', '+', '-',
      '4294967295', '4294967296', ' ', 'x', '\u0000', '00000000000000000001'];
    for (let i = 0; i < 20_000; i++) {
      const n = Math.floor(rnd() * 9);
      let s = '';
      for (let k = 0; k < n; k++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      try {
        const r = parseIdMapRule(s);
        for (const v of [r.source, r.target ?? 0, r.count]) expect(Number.isInteger(v) && v >= 0 && v <= ID_MAX, s).toBe(true);
        // a parsed rule prints back to an equivalent rule
        const again = r.kind === 'forbid-guest' ? `${r.kind}:${r.source}:${r.count}` : `${r.kind}:${r.source}:${r.target}:${r.count}`;
        expect(parseIdMapRule(again)).toEqual(r);
      } catch (e) {
        expect(e, JSON.stringify(s)).toBeInstanceOf(IdMapError);
      }
      try {
        buildIdMap([s, s]);
      } catch (e) {
        expect(e, JSON.stringify(s)).toBeInstanceOf(IdMapError);
      }
    }
  });
});

describe('buildIdMap and the mapping', () => {
  it('maps unmapped ids to themselves', () => {
    const m = buildIdMap([]);
    expect(guestToHost(m, 1234)).toBe(1234);
    expect(hostToGuest(m, ID_MAX)).toBe(ID_MAX);
  });

  it('map: both ways, 1:1 over the range and nothing outside it', () => {
    const m = buildIdMap(['map:1000:5000:10']);
    expect(guestToHost(m, 1000)).toBe(5000);
    expect(guestToHost(m, 1009)).toBe(5009);
    expect(guestToHost(m, 1010)).toBe(1010);
    expect(guestToHost(m, 999)).toBe(999);
    expect(hostToGuest(m, 5003)).toBe(1003);
    expect(hostToGuest(m, 5010)).toBe(5010);
  });

  it('guest/host and squash rules work in their one direction only', () => {
    const m = buildIdMap(['guest:10:20:2', 'host:30:40:2', 'squash-guest:100:7:50', 'squash-host:200:8:50']);
    expect(guestToHost(m, 11)).toBe(21);
    expect(hostToGuest(m, 21)).toBe(21);
    expect(hostToGuest(m, 31)).toBe(41);
    expect(guestToHost(m, 31)).toBe(31);
    expect(guestToHost(m, 149)).toBe(7);
    expect(guestToHost(m, 150)).toBe(150);
    expect(hostToGuest(m, 7)).toBe(7);
    expect(hostToGuest(m, 249)).toBe(8);
    expect(guestToHost(m, 249)).toBe(249);
  });

  it('forbid-guest refuses (null) and only in the guest direction', () => {
    const m = buildIdMap(['forbid-guest:0:1', 'squash-guest:1:1000:4294967294']);
    expect(guestToHost(m, 0)).toBeNull();
    expect(guestToHost(m, 1)).toBe(1000);
    expect(guestToHost(m, ID_MAX - 1)).toBe(1000);
    expect(guestToHost(m, ID_MAX)).toBe(ID_MAX);
    expect(hostToGuest(m, 0)).toBe(0);
  });

  it('the common "everything squashed onto one user" setup', () => {
    const m = buildIdMap(['squash-guest:0:1000:4294967295', 'squash-host:0:0:4294967295']);
    for (const g of [0, 1, 1000, 65534, ID_MAX - 1]) expect(guestToHost(m, g)).toBe(1000);
    for (const h of [0, 1000, 12345]) expect(hostToGuest(m, h)).toBe(0);
  });

  it('refuses overlaps within one direction, ranges past 2^32-1 and empty ranges', () => {
    expect(() => buildIdMap(['map:0:100:10', 'guest:5:0:1'])).toThrow(/guest range \[5, 6\) overlaps/);
    expect(() => buildIdMap(['map:0:100:10', 'host:109:0:1'])).toThrow(/host range \[109, 110\) overlaps/);
    expect(() => buildIdMap(['forbid-guest:0:10', 'squash-guest:9:0:1'])).toThrow(IdMapError);
    // the guest and host tables are separate: these do not overlap
    expect(() => buildIdMap(['guest:0:100:10', 'host:0:100:10'])).not.toThrow();
    expect(() => buildIdMap(['map:4294967295:0:2'])).toThrow(/runs past/);
    expect(() => buildIdMap(['map:0:4294967295:2'])).toThrow(/runs past/);
    expect(() => buildIdMap(['forbid-guest:4294967290:7'])).toThrow(/runs past/);
    expect(() => buildIdMap(['squash-guest:4294967295:0:1'])).not.toThrow();
    expect(() => buildIdMap(['map:1:2:0'])).toThrow(/at least 1/);
  });
});

const ctx = (uid: number, gid: number, groups?: number[]): Context => ({ uid, gid, pid: 1, unique: 1n, ...(groups ? { groups } : {}) });
const attr = (uid: number, gid: number): Attr => ({
  ino: 5n, size: 0n, blocks: 0n, atime: { sec: 0n, nsec: 0 }, mtime: { sec: 0n, nsec: 0 }, ctime: { sec: 0n, nsec: 0 },
  mode: 0o100644, nlink: 1, uid, gid, rdevMajor: 0, rdevMinor: 0, blksize: 4096, attributes: 0n,
} as unknown as Attr);
const entry = (uid: number, gid: number): Entry => ({ nodeid: 2n, generation: 1n, attr: attr(uid, gid), entryTimeoutMs: 0, attrTimeoutMs: 0 });

/** A stub core that records the credentials it is called with and answers attributes owned by `owner`. */
class Recorder extends DefaultFileSystem {
  seen: Array<{ op: string; uid: number; gid: number; groups?: readonly number[] }> = [];
  chown: SetattrIn | null = null;
  constructor(private readonly owner: [number, number]) {
    super();
  }
  override async lookup(_c: Context, _p: bigint, name: Buffer): Promise<Entry | FsError> {
    return name.toString() === 'missing' ? failure(E.ENOENT) : entry(...this.owner);
  }
  override async getattr() { return { attr: attr(...this.owner), attrTimeoutMs: 0 }; }
  override async setattr(_c: Context, _n: bigint, s: SetattrIn) {
    this.chown = s;
    return { attr: attr(...this.owner), attrTimeoutMs: 0 };
  }
  override async mkdir(c: Context): Promise<Entry> {
    this.seen.push({ op: 'mkdir', uid: c.uid, gid: c.gid, groups: c.groups });
    return entry(...this.owner);
  }
  override async create(c: Context) {
    this.seen.push({ op: 'create', uid: c.uid, gid: c.gid });
    return { entry: entry(...this.owner), open: { fh: 1n, openFlags: 0 } };
  }
  override async access(c: Context): Promise<void> { this.seen.push({ op: 'access', uid: c.uid, gid: c.gid, groups: c.groups }); }
  override async readdirplus(_c: Context, _n: bigint, _fh: bigint, _o: bigint, _s: number, add: (e: never, en: Entry | null) => boolean) {
    add({} as never, entry(...this.owner));
    add({} as never, null);
  }
}

describe('IdMapFs', () => {
  const maps = (): [ReturnType<typeof buildIdMap>, ReturnType<typeof buildIdMap>] =>
    [buildIdMap(['map:1000:5000:10', 'forbid-guest:666:1']), buildIdMap(['map:100:700:10', 'forbid-guest:66:1'])];

  it('requests carry host ids, replies carry client ids', async () => {
    const core = new Recorder([5001, 701]);
    const fs = new IdMapFs(core, ...maps());
    const e = await fs.mkdir(ctx(1001, 101, [102, 66, 3]), 1n, Buffer.from('d'), 0o755, 0);
    expect(core.seen[0]).toEqual({ op: 'mkdir', uid: 5001, gid: 701, groups: [702, 3] });
    expect([e.attr.uid, e.attr.gid]).toEqual([1001, 101]);
    const c = await fs.create(ctx(1002, 102), 1n, Buffer.from('f'), 0o644, 0, 0);
    expect(core.seen[1]).toMatchObject({ uid: 5002, gid: 702 });
    expect([c.entry.attr.uid, c.entry.attr.gid]).toEqual([1001, 101]);
    const l = found(await fs.lookup(ctx(0, 0), 1n, Buffer.from('f')));
    expect([l.attr.uid, l.attr.gid]).toEqual([1001, 101]);
    // a missing name answered as a value passes through as that FsError, not as a mapped entry
    expect(await fs.lookup(ctx(0, 0), 1n, Buffer.from('missing'))).toBe(failure(E.ENOENT));
    const g = await fs.getattr(ctx(0, 0), 2n);
    expect([g.attr.uid, g.attr.gid]).toEqual([1001, 101]);
    const seen: Array<Entry | null> = [];
    await fs.readdirplus(ctx(0, 0), 1n, 1n, 0n, 4096, (_d, en) => (seen.push(en), true));
    expect(seen.map((x) => x && [x.attr.uid, x.attr.gid])).toEqual([[1001, 101], null]);
    await fs.access(ctx(1003, 103, [104]), 2n, 4);
    expect(core.seen[2]).toEqual({ op: 'access', uid: 5003, gid: 703, groups: [704] });
  });

  it('chown goes to host ids; only the fields SETATTR selects', async () => {
    const core = new Recorder([5000, 700]);
    const fs = new IdMapFs(core, ...maps());
    const r = await fs.setattr(ctx(0, 0), 2n, { valid: FATTR_UID | FATTR_GID, uid: 1005, gid: 105 } as SetattrIn);
    expect([core.chown!.uid, core.chown!.gid]).toEqual([5005, 705]);
    expect([r.attr.uid, r.attr.gid]).toEqual([1000, 100]);
    await fs.setattr(ctx(0, 0), 2n, { valid: FATTR_MODE, mode: 0o600, uid: 666, gid: 66 } as SetattrIn);
    expect([core.chown!.uid, core.chown!.gid]).toEqual([666, 66]);
  });

  it('a forbidden id is EPERM before the core sees anything', async () => {
    const core = new Recorder([5000, 700]);
    const fs = new IdMapFs(core, ...maps());
    const eperm = (p: Promise<unknown>) => expect(p).rejects.toSatisfy((e: unknown) => e instanceof FsError && e.errno === E.EPERM);
    await eperm(fs.mkdir(ctx(666, 100), 1n, Buffer.from('d'), 0o755, 0));
    await eperm(fs.create(ctx(1000, 66), 1n, Buffer.from('f'), 0o644, 0, 0));
    await eperm(fs.setattr(ctx(0, 0), 2n, { valid: FATTR_UID, uid: 666, gid: 0 } as SetattrIn));
    await eperm(fs.setattr(ctx(0, 0), 2n, { valid: FATTR_GID, uid: 0, gid: 66 } as SetattrIn));
    expect(core.seen).toEqual([]);
    expect(core.chown).toBeNull();
  });
});
