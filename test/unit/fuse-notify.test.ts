/**
 * Host-change notifications on the wire (src/fuse/notify.ts) and when they are on (--host-notify in
 * src/config.ts). The layout is checked against the kernel's include/uapi/linux/fuse.h by hand:
 * fuse_out_header {len u32, error i32 = the notify code, unique u64 = 0}, then
 * fuse_notify_inval_entry_out {parent u64, namelen u32, flags u32} + name + NUL, or
 * fuse_notify_inval_inode_out {ino u64, off i64, len i64}.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, makeConfig } from '../../src/config.js';
import { encodeInvalEntry, encodeInvalInode, notificationsTo } from '../../src/fuse/notify.js';

describe('FUSE notifications', () => {
  it('INVAL_ENTRY: header with code 3 and unique 0, parent, name length, the name bytes and a NUL', () => {
    const name = Buffer.from([0x61, 0xff, 0x62]); // not UTF-8: names are bytes
    const b = encodeInvalEntry(0x1122334455n, name);
    expect(b.length).toBe(16 + 16 + 3 + 1);
    expect(b.readUInt32LE(0)).toBe(b.length);
    expect(b.readInt32LE(4)).toBe(3);
    expect(b.readBigUInt64LE(8)).toBe(0n);
    expect(b.readBigUInt64LE(16)).toBe(0x1122334455n);
    expect(b.readUInt32LE(24)).toBe(3);
    expect(b.readUInt32LE(28)).toBe(0);
    expect(b.subarray(32, 35)).toEqual(name);
    expect(b[35]).toBe(0);
  });

  it('INVAL_INODE: code 2; data drops every page (off 0, len 0), attributes only is off -1', () => {
    const d = encodeInvalInode(42n, true);
    expect(d.length).toBe(16 + 24);
    expect(d.readUInt32LE(0)).toBe(40);
    expect(d.readInt32LE(4)).toBe(2);
    expect(d.readBigUInt64LE(8)).toBe(0n);
    expect(d.readBigUInt64LE(16)).toBe(42n);
    expect(d.readBigInt64LE(24)).toBe(0n);
    expect(d.readBigInt64LE(32)).toBe(0n);
    const a = encodeInvalInode(42n, false);
    expect(a.readBigInt64LE(24)).toBe(-1n);
    expect(a.readBigInt64LE(32)).toBe(0n);
  });

  it("the core's listener hands each invalidation, encoded, to the transport", () => {
    const sent: Buffer[] = [];
    const l = notificationsTo((m) => sent.push(m));
    l.invalEntry(7n, Buffer.from('x'));
    l.invalInode(9n, false);
    expect(sent.map((m) => m.readInt32LE(4))).toEqual([3, 2]);
    expect(sent[0]).toEqual(encodeInvalEntry(7n, Buffer.from('x')));
    expect(sent[1]).toEqual(encodeInvalInode(9n, false));
  });
});

describe('--host-notify', () => {
  it('is on by default for the raw in-process server, off with --cache never, --supervise or fuse-native', () => {
    expect(makeConfig('/s', '/m').hostNotify).toBe(true);
    expect(makeConfig('/s', '/m', { cache: 'always' }).hostNotify).toBe(true);
    expect(makeConfig('/s', '/m', { cache: 'never' }).hostNotify).toBe(false);
    expect(makeConfig('/s', '/m', { supervise: true }).hostNotify).toBe(false);
    expect(makeConfig('/s', '/m', { frontend: 'fuse-native' }).hostNotify).toBe(false);
    expect(makeConfig('/s', '/m', { hostNotify: false }).hostNotify).toBe(false);
  });

  it('asked for where it cannot be done is a usage error', () => {
    expect(() => makeConfig('/s', '/m', { hostNotify: true, supervise: true })).toThrow(ConfigError);
    expect(() => makeConfig('/s', '/m', { hostNotify: true, frontend: 'fuse-native' })).toThrow(/--host-notify needs --frontend raw/);
  });
});
