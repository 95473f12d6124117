/**
 * virtiofsd's --security-label and --announce-submounts at the protocol level: INIT negotiation, the security context request extension (FUSE_SECURITY_CTX) parsed from
 * crafted CREATE/MKDIR/MKNOD/SYMLINK/TMPFILE requests through the ProtocolServer into the
 * filesystem's Context, hostile extensions answered EINVAL, and FUSE_ATTR_SUBMOUNT in entries.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { E } from '../../src/errors.js';
import { DefaultFileSystem } from '../../src/fs/filesystem.js';
import type { Context, CreateOut, DeviceNumber, Entry, InitOptions } from '../../src/fs/types.js';
import { Attr, CreateIn, EntryOut, InHeader, InitIn, InitOut, MkdirIn, MknodIn, OutHeader, encodeStruct, readStruct } from '../../src/fuse/abi.js';
import { cstr, encodeRequest } from '../../src/fuse/codec.js';
import { encodeSecurityLabel, extensionRecords, FUSE_EXT_GROUPS, securityContext } from '../../src/fuse/extensions.js';
import * as F from '../../src/fuse/flags.js';
import { Op } from '../../src/fuse/opcodes.js';
import { ProtocolServer, type ProtocolOptions } from '../../src/fuse/protocol-server.js';
import { mulberry32 } from '../helpers/prng.js';

const silent = pino({ level: 'silent' });
const ALL_OFFERED = (1n << 43n) - 1n;
const B = (s: string): Buffer => Buffer.from(s);

const entry = (nodeid: bigint, mode: number, submount = false): Entry => ({
  nodeid, generation: 1n, entryTimeoutMs: 1000, attrTimeoutMs: 1000, ...(submount ? { submount } : {}),
  attr: {
    ino: nodeid, size: 0n, blocks: 0n, atime: { sec: 1n, nsec: 0 }, mtime: { sec: 1n, nsec: 0 }, ctime: { sec: 1n, nsec: 0 },
    btime: null, mode, nlink: 1, uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, blksize: 4096, attributes: 0n,
  },
});

/** Records the security label each creating call received (copied: the request buffer is reused). */
class LabelFs extends DefaultFileSystem {
  labels: Array<[string, string, string] | [string, null]> = [];
  initOpts?: InitOptions;
  override async init(o: InitOptions): Promise<void> { this.initOpts = o; }
  private seen(op: string, c: Context): void {
    this.labels.push(c.secctx ? [op, c.secctx.name.toString(), c.secctx.value.toString('hex')] : [op, null]);
  }
  override async lookup(_c: Context, _p: bigint, name: Buffer): Promise<Entry> {
    return entry(7n, 0o040755, name.toString() === 'mnt');
  }
  override async mkdir(c: Context): Promise<Entry> { this.seen('mkdir', c); return entry(8n, 0o040755); }
  override async mknod(c: Context, _p: bigint, _n: Buffer, _m: number, _r: DeviceNumber): Promise<Entry> { this.seen('mknod', c); return entry(9n, 0o010644); }
  override async symlink(c: Context): Promise<Entry> { this.seen('symlink', c); return entry(10n, 0o120777); }
  override async create(c: Context): Promise<CreateOut> { this.seen('create', c); return { entry: entry(11n, 0o100644), open: { fh: 1n, openFlags: 0 } }; }
  override async tmpfile(c: Context): Promise<CreateOut> { this.seen('tmpfile', c); return { entry: entry(12n, 0o100644), open: { fh: 2n, openFlags: 0 } }; }
}

async function setup(opts: Partial<ProtocolOptions>, offered = ALL_OFFERED) {
  const fs = new LabelFs();
  const srv = new ProtocolServer(fs, opts, silent);
  const init = await srv.handle(encodeRequest({ opcode: Op.INIT, unique: 1n },
    encodeStruct(InitIn, { major: 7, minor: 45, max_readahead: 0, flags: Number(offered & 0xffffffffn), flags2: Number(offered >> 32n) })));
  let u = 100n;
  const call = (opcode: number, ext: Buffer | undefined, ...parts: Buffer[]) =>
    srv.handle(encodeRequest({ opcode, unique: ++u, nodeid: 1n, ...(ext ? { ext } : {}) }, ...parts));
  return { fs, srv, init: init!, call };
}

const errnoOf = (b: Buffer | null): number => -b!.readInt32LE(4) | 0;
const initFlags = (b: Buffer): bigint => {
  const o = readStruct(InitOut, b.subarray(OutHeader.SIZE));
  return BigInt(o.flags as number) | (BigInt(o.flags2 as number) << 32n);
};

/** One request of each creating opcode, with `ext` as its extension area. */
const creating = (ext: Buffer | undefined) => [
  [Op.CREATE, ext, encodeStruct(CreateIn, { flags: 0o101, mode: 0o100644, umask: 0o22 }), cstr('f')],
  [Op.MKDIR, ext, encodeStruct(MkdirIn, { mode: 0o755, umask: 0o22 }), cstr('d')],
  [Op.MKNOD, ext, encodeStruct(MknodIn, { mode: 0o010644, rdev: 0, umask: 0o22 }), cstr('p')],
  [Op.SYMLINK, ext, cstr('l'), cstr('target')],
  [Op.TMPFILE, ext, encodeStruct(CreateIn, { flags: 0o2, mode: 0o100600, umask: 0o22 }), cstr('/')],
] as const;

const label = { name: B('security.selinux'), value: B('system_u:object_r:tmp_t:s0\0') };

describe('--security-label (FUSE_SECURITY_CTX)', () => {
  it('is requested only with the option; a kernel that does not offer it fails INIT with EPROTO', async () => {
    expect(initFlags((await setup({})).init) & F.FUSE_SECURITY_CTX).toBe(0n);
    const on = await setup({ securityLabel: true });
    expect(errnoOf(on.init)).toBe(0);
    expect(initFlags(on.init) & F.FUSE_SECURITY_CTX).toBe(F.FUSE_SECURITY_CTX);
    const refused = await setup({ securityLabel: true }, ALL_OFFERED & ~F.FUSE_SECURITY_CTX);
    expect(errnoOf(refused.init)).toBe(E.EPROTO);
    expect(refused.srv.negotiated).toBeNull();
  });

  it('each creating request hands its label to the filesystem; a header without a context gives none', async () => {
    const { fs, call } = await setup({ securityLabel: true });
    for (const [op, ext, ...parts] of creating(encodeSecurityLabel(label))) expect(errnoOf(await call(op, ext, ...parts))).toBe(0);
    const hex = label.value.toString('hex');
    expect(fs.labels).toEqual([
      ['create', 'security.selinux', hex], ['mkdir', 'security.selinux', hex], ['mknod', 'security.selinux', hex],
      ['symlink', 'security.selinux', hex], ['tmpfile', 'security.selinux', hex],
    ]);
    fs.labels = [];
    // what the kernel sends when no LSM labels new files: the header alone (nr_secctx 0)
    for (const [op, ext, ...parts] of creating(encodeSecurityLabel(null))) expect(errnoOf(await call(op, ext, ...parts))).toBe(0);
    for (const [op, ext, ...parts] of creating(undefined)) expect(errnoOf(await call(op, ext, ...parts))).toBe(0);
    expect(fs.labels.every((l) => l[1] === null)).toBe(true);
    expect(fs.labels.length).toBe(10);
  });

  it('the names before the extension are found where the kernel put them (symlink target not eaten)', async () => {
    const { fs, call } = await setup({ securityLabel: true });
    let target = '';
    fs.symlink = async (c: Context, ...args: unknown[]) => {
      const [t, , n] = args as [Buffer, bigint, Buffer];
      target = `${n}->${t}:${c.secctx?.name}`;
      return entry(10n, 0o120777);
    };
    expect(errnoOf(await call(Op.SYMLINK, encodeSecurityLabel(label), cstr('l'), cstr('target')))).toBe(0);
    expect(target).toBe('l->target:security.selinux');
  });

  it('without the option the extension is not parsed: the filesystem sees no label', async () => {
    const { fs, call } = await setup({});
    for (const [op, ext, ...parts] of creating(encodeSecurityLabel(label))) expect(errnoOf(await call(op, ext, ...parts))).toBe(0);
    expect(fs.labels.map((l) => l[1])).toEqual([null, null, null, null, null]);
  });

  it('a supplementary groups record next to the label is skipped', async () => {
    const groups = Buffer.alloc(16);
    groups.writeUInt32LE(16, 0);
    groups.writeUInt32LE(FUSE_EXT_GROUPS, 4);
    groups.writeUInt32LE(1, 8);
    groups.writeUInt32LE(4242, 12);
    const { fs, call } = await setup({ securityLabel: true });
    const [op, , ...parts] = creating(undefined)[1];
    expect(errnoOf(await call(op, Buffer.concat([encodeSecurityLabel(label), groups]), ...parts))).toBe(0);
    expect(fs.labels).toEqual([['mkdir', 'security.selinux', label.value.toString('hex')]]);
  });

  /** a label extension with fields overwritten: [offset, u32] pairs */
  const patched = (...fields: Array<[number, number]>): Buffer => {
    const b = encodeSecurityLabel(label);
    for (const [off, v] of fields) b.writeUInt32LE(v >>> 0, off);
    return b;
  };

  it('hostile extensions are EINVAL and reach no filesystem call; the server keeps serving', async () => {
    const { fs, call } = await setup({ securityLabel: true });
    const good = encodeSecurityLabel(label);
    const cases: Buffer[] = [
      patched([0, 4]), // record smaller than its header
      patched([0, good.length + 8]), // record longer than the area
      patched([0, 12]), // not a multiple of 8
      patched([4, 2]), // two contexts
      patched([8, 0xffffffff]), // value length beyond the record
      patched([8, good.length]), // value runs past the record
      Buffer.concat([good, good]), // two security records
      (() => { const b = Buffer.from(good); b.fill(0x41, 16); return b; })(), // name without its NUL
      (() => { const b = Buffer.from(good); b[16] = 0; return b; })(), // empty name
      (() => { const b = Buffer.alloc(16 + 264); b.writeUInt32LE(b.length, 0); b.writeUInt32LE(1, 4); b.fill(0x61, 16, 16 + 256); return b; })(), // 256-byte name
      Buffer.alloc(8), // header of size 0
    ];
    for (const ext of cases) {
      for (const [op, , ...parts] of creating(undefined)) expect(errnoOf(await call(op, ext, ...parts))).toBe(E.EINVAL);
    }
    expect(fs.labels).toEqual([]);
    // an extension length that runs into the header is EINVAL at the header already
    const r = encodeRequest({ opcode: Op.MKDIR, unique: 5n, nodeid: 1n }, encodeStruct(MkdirIn, { mode: 0o755, umask: 0 }), cstr('d'));
    r.writeUInt16LE(0xffff, InHeader.total_extlen);
    expect(errnoOf(await (await setup({ securityLabel: true })).srv.handle(r))).toBe(E.EINVAL);
    const [op, ext, ...parts] = creating(good)[1];
    expect(errnoOf(await call(op, ext, ...parts))).toBe(0);
  });

  it('fuzzed extension areas: a label within bounds or EINVAL, never another answer', async () => {
    const rand = mulberry32(0x5ecc7);
    const { fs, call } = await setup({ securityLabel: true });
    const good = encodeSecurityLabel(label);
    let parsed = 0;
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const ext = Buffer.from(good);
      for (let k = 1 + Math.floor(rand() * 4); k > 0; k--) {
        const at = Math.floor(rand() * ext.length);
        if (rand() < 0.5) ext[at] = Math.floor(rand() * 256);
        else ext.writeUInt32LE(Math.floor(rand() * 64), at & ~3);
      }
      fs.labels = [];
      const [op, , ...parts] = creating(undefined)[i % 5];
      const err = errnoOf(await call(op, ext, ...parts));
      expect([0, E.EINVAL]).toContain(err);
      if (err === 0) {
        parsed++;
        const got = securityContext(ext, 0, ext.length);
        if (got) {
          expect(got.name.length).toBeGreaterThan(0);
          expect(got.value.byteOffset + got.value.length).toBeLessThanOrEqual(ext.byteOffset + ext.length);
        }
      } else refused++;
    }
    expect(parsed).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(50);
  });

  it('extensionRecords walks records by their size and refuses a cut-short one', () => {
    const two = Buffer.concat([encodeSecurityLabel(null), encodeSecurityLabel(label)]);
    expect(extensionRecords(two, 0, two.length).map((r) => [r.type, r.body.length])).toEqual([[0, 0], [1, two.length - 16]]);
    expect(() => extensionRecords(two, 0, 4)).toThrow(/cut short/);
  });
});

describe('--announce-submounts (FUSE_SUBMOUNTS)', () => {
  it('is requested only with the option and tells the filesystem whether it was agreed', async () => {
    const off = await setup({});
    expect(initFlags(off.init) & F.FUSE_SUBMOUNTS).toBe(0n);
    expect(off.fs.initOpts!.submounts).toBe(false);
    const on = await setup({ announceSubmounts: true });
    expect(initFlags(on.init) & F.FUSE_SUBMOUNTS).toBe(F.FUSE_SUBMOUNTS);
    expect(on.fs.initOpts!.submounts).toBe(true);
    // a /dev/fuse kernel does not offer it: INIT still succeeds, without submounts
    const notOffered = await setup({ announceSubmounts: true }, ALL_OFFERED & ~F.FUSE_SUBMOUNTS);
    expect(errnoOf(notOffered.init)).toBe(0);
    expect(notOffered.fs.initOpts!.submounts).toBe(false);
  });

  it('an entry marked submount carries FUSE_ATTR_SUBMOUNT in its attr flags, others 0', async () => {
    const { call } = await setup({ announceSubmounts: true });
    const flagsOf = async (name: string) => (await call(Op.LOOKUP, undefined, cstr(name)))!.readUInt32LE(OutHeader.SIZE + EntryOut.attr + Attr.flags);
    expect(await flagsOf('mnt')).toBe(F.FUSE_ATTR_SUBMOUNT);
    expect(await flagsOf('plain')).toBe(0);
  });
});
