/**
 * FAR_READ (src/frontends/devfuse/threads.ts): over io_uring, a READ of at least 128 KiB (a
 * streaming reader's readahead) is served by a thread on another CPU than its caller's; smaller
 * READs and every other request are not.
 */
import { describe, expect, it } from 'vitest';
import { GetattrIn, ReadIn, WriteIn, encodeStruct } from '../../src/fuse/abi.js';
import { encodeRequest } from '../../src/fuse/codec.js';
import { Op } from '../../src/fuse/opcodes.js';
import { FAR_READ, farRead } from '../../src/frontends/devfuse/threads.js';

const req = (opcode: number, ...parts: Buffer[]): Buffer => encodeRequest({ opcode, unique: 2n, nodeid: 5n, uid: 1, gid: 2, pid: 3 }, ...parts);
const read = (size: number): Buffer => req(Op.READ, encodeStruct(ReadIn, { fh: 1n, offset: 0n, size }));

describe('farRead', () => {
  it('is a READ of FAR_READ bytes or more', () => {
    expect(FAR_READ).toBe(128 * 1024);
    expect(farRead(read(FAR_READ))).toBe(true);
    expect(farRead(read(1 << 20))).toBe(true);
    expect(farRead(read(FAR_READ - 4096))).toBe(false);
    expect(farRead(read(4096))).toBe(false);
  });

  it('is never another request, whatever its bytes, nor a READ cut short', () => {
    // a WRITE whose size field sits where a READ's does
    expect(farRead(req(Op.WRITE, encodeStruct(WriteIn, { fh: 1n, offset: 0n, size: 1 << 20 })))).toBe(false);
    expect(farRead(req(Op.GETATTR, encodeStruct(GetattrIn, {})))).toBe(false);
    const whole = read(1 << 20);
    expect(farRead(whole.subarray(0, 40 + 16))).toBe(false);
    expect(farRead(whole.subarray(0, 4))).toBe(false);
    expect(farRead(Buffer.alloc(0))).toBe(false);
  });
});
