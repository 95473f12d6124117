/**
 * The resend journal (src/frontends/supervisor/resend-journal.ts) with a fake protocol server: a
 * request the kernel resends after a worker died is answered as if done once. Two journals over
 * one table stand for the dead worker and its successor.
 */
import { describe, expect, it } from 'vitest';
import { CreateIn, EntryOut, FUSE_UNIQUE_RESEND, InHeader, LinkIn, OpenOut, OutHeader, WriteIn } from '../../src/fuse/abi.js';
import { Op } from '../../src/fuse/opcodes.js';
import { JOURNAL_BYTES, ResendJournal, nonIdempotent } from '../../src/frontends/supervisor/resend-journal.js';

const IN = InHeader.SIZE;
const ENOENT = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_WRONLY = 1;
const O_APPEND = 0o2000;

function req(opcode: number, unique: bigint, nodeid: bigint, body: Buffer): Buffer {
  const b = Buffer.alloc(IN + body.length);
  b.writeUInt32LE(b.length, InHeader.len);
  b.writeUInt32LE(opcode, InHeader.opcode);
  b.writeBigUInt64LE(unique, InHeader.unique);
  b.writeBigUInt64LE(nodeid, InHeader.nodeid);
  b.writeUInt32LE(1000, InHeader.uid);
  body.copy(b, IN);
  return b;
}
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);
const mkdir = (unique: bigint): Buffer => req(Op.MKDIR, unique, 1n, Buffer.concat([Buffer.alloc(8), cstr('d')]));
const unlink = (unique: bigint): Buffer => req(Op.UNLINK, unique, 1n, cstr('f'));
function create(unique: bigint, flags: number): Buffer {
  const c = Buffer.alloc(CreateIn.SIZE);
  c.writeUInt32LE(flags, CreateIn.flags);
  return req(Op.CREATE, unique, 1n, Buffer.concat([c, cstr('c')]));
}
function write(unique: bigint, flags: number): Buffer {
  const w = Buffer.alloc(WriteIn.SIZE);
  w.writeUInt32LE(flags, WriteIn.flags);
  w.writeUInt32LE(3, WriteIn.size);
  return req(Op.WRITE, unique, 5n, Buffer.concat([w, Buffer.from('abc')]));
}

function reply(unique: bigint, error: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OutHeader.SIZE + payload.length);
  b.writeUInt32LE(b.length, OutHeader.len);
  b.writeInt32LE(-error, OutHeader.error);
  b.writeBigUInt64LE(unique, OutHeader.unique);
  payload.copy(b, OutHeader.SIZE);
  return b;
}
function entry(nodeid: bigint): Buffer {
  const e = Buffer.alloc(EntryOut.SIZE);
  e.writeBigUInt64LE(nodeid, EntryOut.nodeid);
  return e;
}
function opened(fh: bigint): Buffer {
  const o = Buffer.alloc(OpenOut.SIZE);
  o.writeBigUInt64LE(fh, OpenOut.fh);
  return o;
}

/** A server answering by opcode; `hang` leaves matching requests unanswered (the worker dies meanwhile). */
class FakeServer {
  seen: Buffer[] = [];
  lookup: { nodeid: bigint } | null = null;
  hang = false;
  bufferSize(): number {
    return 1 << 20;
  }
  handle(r: Buffer): Promise<Buffer | null> {
    this.seen.push(Buffer.from(r));
    const op = r.readUInt32LE(InHeader.opcode);
    const u = r.readBigUInt64LE(InHeader.unique);
    if (op === Op.FORGET) return Promise.resolve(null);
    if (op === Op.LOOKUP) return Promise.resolve(this.lookup ? reply(u, 0, entry(this.lookup.nodeid)) : reply(u, ENOENT));
    if (op === Op.OPEN) return Promise.resolve(reply(u, 0, opened(77n)));
    if (this.hang) return new Promise(() => {});
    if (op === Op.MKDIR) return Promise.resolve(reply(u, 0, entry(9n)));
    if (op === Op.CREATE) return Promise.resolve(reply(u, 0, Buffer.concat([entry(10n), opened(3n)])));
    if (op === Op.WRITE) return Promise.resolve(reply(u, 0, Buffer.from([3, 0, 0, 0, 0, 0, 0, 0])));
    return Promise.resolve(reply(u, 0));
  }
  ops(): string[] {
    return this.seen.map((b) => Object.entries(Op).find(([, v]) => v === b.readUInt32LE(InHeader.opcode))![0]);
  }
}

function pair(): { dead: FakeServer; next: FakeServer; first: ResendJournal; successor: ResendJournal } {
  const table = new ArrayBuffer(JOURNAL_BYTES);
  const dead = new FakeServer();
  const next = new FakeServer();
  return { dead, next, first: new ResendJournal(dead, table), successor: new ResendJournal(next, table) };
}
const resent = (u: bigint): bigint => u | FUSE_UNIQUE_RESEND;

describe('resend journal', () => {
  it('tells the non-idempotent requests from the others', () => {
    expect(nonIdempotent(mkdir(2n))).toBe(true);
    expect(nonIdempotent(unlink(2n))).toBe(true);
    expect(nonIdempotent(create(2n, O_CREAT | O_EXCL))).toBe(true);
    expect(nonIdempotent(create(2n, O_CREAT | O_WRONLY))).toBe(false);
    expect(nonIdempotent(write(2n, O_WRONLY | O_APPEND))).toBe(true);
    expect(nonIdempotent(write(2n, O_WRONLY))).toBe(false);
    expect(nonIdempotent(req(Op.GETATTR, 2n, 1n, Buffer.alloc(16)))).toBe(false);
  });

  it('a request done before the worker died gets its recorded reply, not a second run', async () => {
    const { next, first, successor } = pair();
    const r1 = await first.handle(mkdir(40n));
    expect(r1!.readBigUInt64LE(OutHeader.SIZE + EntryOut.nodeid)).toBe(9n);
    const r2 = await successor.handle(mkdir(resent(40n)));
    expect(next.seen).toEqual([]);
    expect(r2!.readBigUInt64LE(OutHeader.unique)).toBe(resent(40n));
    expect(r2!.subarray(OutHeader.SIZE)).toEqual(r1!.subarray(OutHeader.SIZE));
    expect(successor.counters).toMatchObject({ resent: 1, resentDone: 1 });
  });

  it('a done exclusive create is answered with its entry and a new open file', async () => {
    const { next, first, successor } = pair();
    await first.handle(create(42n, O_CREAT | O_EXCL | O_WRONLY));
    const r = await successor.handle(create(resent(42n), O_CREAT | O_EXCL | O_WRONLY));
    expect(next.ops()).toEqual(['OPEN']);
    expect(next.seen[0]!.readUInt32LE(IN) & (O_CREAT | O_EXCL)).toBe(0);
    expect(next.seen[0]!.readBigUInt64LE(InHeader.nodeid)).toBe(10n);
    expect(r!.readInt32LE(OutHeader.error)).toBe(0);
    expect(r!.readBigUInt64LE(OutHeader.SIZE + EntryOut.nodeid)).toBe(10n);
    expect(r!.readBigUInt64LE(OutHeader.SIZE + EntryOut.SIZE + OpenOut.fh)).toBe(77n);
  });

  it('begun and not recorded: the name tells whether it was done', async () => {
    // mkdir: the name exists, so the dead worker made it; answered with its lookup
    let p = pair();
    p.dead.hang = true;
    void p.first.handle(mkdir(44n));
    p.next.lookup = { nodeid: 12n };
    let r = await p.successor.handle(mkdir(resent(44n)));
    expect(p.next.ops()).toEqual(['LOOKUP']);
    expect(r!.readBigUInt64LE(OutHeader.SIZE + EntryOut.nodeid)).toBe(12n);
    expect(r!.readBigUInt64LE(OutHeader.unique)).toBe(resent(44n));
    // mkdir: no such name, so it was not done; it runs again
    p = pair();
    p.dead.hang = true;
    void p.first.handle(mkdir(46n));
    r = await p.successor.handle(mkdir(resent(46n)));
    expect(p.next.ops()).toEqual(['LOOKUP', 'MKDIR']);
    expect(p.successor.counters).toMatchObject({ resentRerun: 1 });
    // unlink: the name is gone, so it was done
    p = pair();
    p.dead.hang = true;
    void p.first.handle(unlink(48n));
    r = await p.successor.handle(unlink(resent(48n)));
    expect(p.next.ops()).toEqual(['LOOKUP']);
    expect(r!.readInt32LE(OutHeader.error)).toBe(0);
    expect(r!.length).toBe(OutHeader.SIZE);
    // unlink: the name is still there; the lookup's count is given back and it runs again
    p = pair();
    p.dead.hang = true;
    void p.first.handle(unlink(50n));
    p.next.lookup = { nodeid: 13n };
    await p.successor.handle(unlink(resent(50n)));
    expect(p.next.ops()).toEqual(['LOOKUP', 'FORGET', 'UNLINK']);
  });

  it('a link is established only when the name is the inode linked', async () => {
    const link = (u: bigint): Buffer => {
      const l = Buffer.alloc(LinkIn.SIZE);
      l.writeBigUInt64LE(20n, LinkIn.oldnodeid);
      return req(Op.LINK, u, 1n, Buffer.concat([l, cstr('l')]));
    };
    const p = pair();
    p.dead.hang = true;
    void p.first.handle(link(52n));
    p.next.lookup = { nodeid: 21n };
    const r = await p.successor.handle(link(resent(52n)));
    expect(r!.readInt32LE(OutHeader.error)).toBe(-5);
    expect(p.next.ops()).toEqual(['LOOKUP', 'FORGET']);
  });

  it('an O_APPEND write begun and not recorded is EIO; never begun, it runs', async () => {
    const p = pair();
    p.dead.hang = true;
    void p.first.handle(write(54n, O_WRONLY | O_APPEND));
    const r = await p.successor.handle(write(resent(54n), O_WRONLY | O_APPEND));
    expect(r!.readInt32LE(OutHeader.error)).toBe(-5);
    expect(p.successor.counters).toMatchObject({ resentEio: 1 });
    const r2 = await p.successor.handle(write(resent(56n), O_WRONLY | O_APPEND));
    expect(r2!.readInt32LE(OutHeader.error)).toBe(0);
    expect(p.next.ops()).toEqual(['WRITE']);
  });

  it('an idempotent request is served again as it is', async () => {
    const p = pair();
    const r = await p.successor.handle(req(Op.GETATTR, resent(58n), 1n, Buffer.alloc(16)));
    expect(p.next.ops()).toEqual(['GETATTR']);
    expect(r!.readBigUInt64LE(OutHeader.unique)).toBe(resent(58n));
    expect(p.successor.counters).toMatchObject({ resent: 1, resentDone: 0, resentRerun: 0 });
  });
});
