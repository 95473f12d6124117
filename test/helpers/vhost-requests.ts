/**
 * FUSE requests as a virtio-fs guest sends them, posted on a fake VMM's queues (fake-vmm.ts), and
 * the checks of their replies.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { CreateIn, EntryOut, GetattrIn, InitIn, OutHeader, ReadIn, ReleaseIn, WriteIn, encodeStruct } from '../../src/fuse/abi.js';
import { cstr, encodeRequest } from '../../src/fuse/codec.js';
import { Op } from '../../src/fuse/opcodes.js';
import { O_CREAT, O_RDWR } from '../../src/sys/constants.js';
import type { FakeVmm, PostOpts } from './fake-vmm.js';

const UID = process.getuid?.() ?? 0;
const GID = process.getgid?.() ?? 0;

/** the unique of the last request made */
export let unique = 100n;
export const req = (opcode: number, nodeid: bigint, ...parts: Buffer[]): Buffer =>
  encodeRequest({ opcode, unique: ++unique, nodeid, uid: UID, gid: GID, pid: 1 }, ...parts);
/** FUSE 7.38 INIT with the 6.1 guest's flags (0xb7bfffffb). */
export const initReq = (): Buffer => req(Op.INIT, 0n, encodeStruct(InitIn, { major: 7, minor: 38, max_readahead: 131072, flags: 0x7bfffffb, flags2: 0xb }));
export const outErr = (b: Buffer): number => b.readInt32LE(OutHeader.error);
export const outLen = (b: Buffer): number => b.readUInt32LE(OutHeader.len);

export async function ok(vmm: FakeVmm, r: Buffer, room = 4096, o: PostOpts = {}): Promise<Buffer> {
  const got = await vmm.request(r, room, o);
  expect(got, 'no reply on the used ring').not.toBeNull();
  expect(got!.guards, 'a guard byte around the reply space changed').toBe(true);
  expect(got!.called, 'no interrupt on the call eventfd').toBe(true);
  expect(outErr(got!.reply), `FUSE error for opcode ${r.readUInt32LE(4)}`).toBe(0);
  expect(got!.len).toBe(outLen(got!.reply));
  return got!.reply;
}

/** INIT, CREATE, WRITE, READ, GETATTR, LOOKUP, RELEASE through the queue; checks the host file. */
export async function fileRoundTrip(env: { vmm: FakeVmm; share: string }, name: string, o: PostOpts = {}): Promise<void> {
  const { vmm, share } = env;
  const init = await ok(vmm, initReq(), 4096, o);
  expect(init.readUInt32LE(16)).toBe(7);
  const created = await ok(vmm, req(Op.CREATE, 1n, encodeStruct(CreateIn, { flags: O_RDWR | O_CREAT, mode: 0o100644, umask: 0o022, open_flags: 0 }), cstr(name)), 4096, o);
  const nodeid = created.readBigUInt64LE(16);
  const fh = created.readBigUInt64LE(16 + EntryOut.SIZE);
  const data = Buffer.from(`bytes of ${name} through the virtqueue `.repeat(50));
  const wrote = await ok(vmm, req(Op.WRITE, nodeid, encodeStruct(WriteIn, { fh, offset: 0n, size: data.length, write_flags: 0, lock_owner: 0n, flags: O_RDWR, padding: 0 }), data), 4096, o);
  expect(wrote.readUInt32LE(16)).toBe(data.length);
  expect(fs.readFileSync(path.join(env.share, name))).toEqual(data);
  const read = await ok(vmm, req(Op.READ, nodeid, encodeStruct(ReadIn, { fh, offset: 0n, size: 8192, read_flags: 0, lock_owner: 0n, flags: O_RDWR, padding: 0 })), 8192 + 16, o);
  expect(read.subarray(16)).toEqual(data);
  const attr = await ok(vmm, req(Op.GETATTR, nodeid, encodeStruct(GetattrIn, { getattr_flags: 0, dummy: 0, fh: 0n })), 4096, o);
  expect(attr.readBigUInt64LE(16 + 16 + 8)).toBe(BigInt(data.length)); // AttrOut.attr.size
  const looked = await ok(vmm, req(Op.LOOKUP, 1n, cstr(name)), 4096, o);
  expect(looked.readBigUInt64LE(16)).toBe(nodeid);
  await ok(vmm, req(Op.RELEASE, nodeid, encodeStruct(ReleaseIn, { fh, flags: O_RDWR, release_flags: 0, lock_owner: 0n })), 4096, o);
  expect(fs.readdirSync(share)).toEqual([name]);
}

