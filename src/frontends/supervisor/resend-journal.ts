/**
 * Answering a request the kernel sends again (FUSE_NOTIFY_RESEND) as if it had been done once.
 *
 * A worker that reads /dev/fuse itself may die between doing a request and answering it; its
 * successor asks the kernel to resend what was read and not answered. Most requests can simply run
 * again. The ones that cannot (MKDIR, MKNOD, SYMLINK, LINK, UNLINK, RMDIR, RENAME, CREATE with
 * O_EXCL, a WRITE on an O_APPEND file, SETXATTR with XATTR_CREATE, REMOVEXATTR) go through a
 * journal in memory shared by every worker of the mount (a memfd the supervisor keeps):
 *
 * - before the request runs, its slot says "intent" (unique, opcode), with plain stores;
 * - once it is done and before the reply is written, the slot holds the reply bytes ("done").
 *
 * A resent request whose slot says "done" gets the recorded reply (a CREATE also gets a new open
 * file, the old one died with its worker). One with only an "intent" may or may not have been
 * done: the name it is about tells, because the kernel holds the directory locked while the
 * request is outstanding and had found the name absent (create, mkdir, ...) or present (unlink,
 * rmdir, rename) before it asked. A name that is present after a create is therefore the worker's
 * doing (answered with a lookup of it); a name gone after an unlink or rename is done (answered 0);
 * otherwise the request runs again. What cannot be established this way (an O_APPEND write, an
 * exchange, xattrs) is answered EIO rather than guessed. A slot is found by the request's unique
 * (the kernel counts uniques up by 2): it is reused 2^14 requests later, long after any reply.
 */
import { E } from '../../errors.js';
import {
  CreateIn, EntryOut, FUSE_UNIQUE_RESEND, ForgetIn, InHeader, LinkIn, OpenIn, OpenOut, OutHeader, Rename2In, SetxattrIn, WriteIn,
} from '../../fuse/abi.js';
import { allocReply, encodeError } from '../../fuse/codec.js';
import { Op } from '../../fuse/opcodes.js';
import type { RequestHandler } from '../devfuse/index.js';

const SLOTS = 1 << 14;
const SLOT = 512;
export const JOURNAL_BYTES = SLOTS * SLOT;
const S_UNIQUE = 0;
const S_STATE = 8;
const S_OPCODE = 12;
const S_LEN = 16;
const S_REPLY = 32;
const MAX_REPLY = SLOT - S_REPLY;
const INTENT = 1;
const DONE = 2;

const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NOCTTY = 0o400;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const RENAME_EXCHANGE = 2;
const XATTR_CREATE = 1;
const IN = InHeader.SIZE;

/** Where the first name of each journaled opcode starts (after its in struct). */
const NAME_AT: ReadonlyMap<number, number> = new Map([
  [Op.MKDIR, IN + 8], [Op.MKNOD, IN + 16], [Op.SYMLINK, IN], [Op.LINK, IN + LinkIn.SIZE], [Op.UNLINK, IN], [Op.RMDIR, IN],
  [Op.RENAME, IN + 8], [Op.RENAME2, IN + Rename2In.SIZE], [Op.CREATE, IN + CreateIn.SIZE],
]);
const MAKES_NAME: ReadonlySet<number> = new Set([Op.MKDIR, Op.MKNOD, Op.SYMLINK, Op.LINK, Op.CREATE]);

/** Whether running `req` twice could differ from running it once. */
export function nonIdempotent(req: Buffer): boolean {
  const op = req.readUInt32LE(InHeader.opcode);
  switch (op) {
    case Op.CREATE:
      return req.length >= IN + CreateIn.SIZE && (req.readUInt32LE(IN + CreateIn.flags) & O_EXCL) !== 0;
    case Op.WRITE:
      return req.length >= IN + WriteIn.SIZE && (req.readUInt32LE(IN + WriteIn.flags) & O_APPEND) !== 0;
    case Op.SETXATTR:
      return req.length >= IN + 8 && (req.readUInt32LE(IN + SetxattrIn.flags) & XATTR_CREATE) !== 0;
    case Op.REMOVEXATTR:
      return true;
    default:
      return NAME_AT.has(op);
  }
}

/** The NUL-terminated name at `at`, or null. */
function nameAt(req: Buffer, at: number): Buffer | null {
  const end = req.indexOf(0, at);
  return at <= req.length && end > at ? req.subarray(at, end) : null;
}

/** A request built from `like`'s header (same requester), for `nodeid`, with `body`. */
function request(like: Buffer, opcode: number, nodeid: bigint, body: Buffer): Buffer {
  const b = Buffer.alloc(IN + body.length);
  like.copy(b, 0, 0, IN);
  b.writeUInt32LE(b.length, InHeader.len);
  b.writeUInt32LE(opcode, InHeader.opcode);
  b.writeBigUInt64LE(nodeid, InHeader.nodeid);
  b.writeUInt16LE(0, InHeader.total_extlen);
  body.copy(b, IN);
  return b;
}

const errorOf = (rep: Buffer): number => rep.readInt32LE(OutHeader.error);

export class ResendJournal implements RequestHandler {
  private readonly view: Buffer;
  /**
   * `resent`: requests the kernel sent again; of the journaled ones, how each was answered: the
   * recorded reply, established by a lookup, run again, or EIO
   */
  readonly counters = { resent: 0, resentDone: 0, resentEstablished: 0, resentRerun: 0, resentEio: 0 };

  constructor(private readonly server: RequestHandler, table: ArrayBuffer) {
    this.view = Buffer.from(table);
  }

  get negotiated(): unknown {
    return this.server.negotiated;
  }

  bufferSize(): number {
    return this.server.bufferSize();
  }

  handle(req: Buffer): Promise<Buffer | null> {
    if (req.length < IN) return this.server.handle(req);
    const unique = req.readBigUInt64LE(InHeader.unique);
    const resent = (unique & FUSE_UNIQUE_RESEND) !== 0n;
    if (resent) this.counters.resent++;
    if (!nonIdempotent(req)) return this.server.handle(req);
    if (resent) return this.resent(req, unique);
    return this.journaled(req, this.slot(unique));
  }

  private slot(unique: bigint): number {
    return Number(((unique & ~FUSE_UNIQUE_RESEND) >> 1n) % BigInt(SLOTS)) * SLOT;
  }

  private async journaled(req: Buffer, at: number): Promise<Buffer | null> {
    const v = this.view;
    v.writeUInt32LE(0, at + S_STATE);
    v.writeBigUInt64LE(req.readBigUInt64LE(InHeader.unique) & ~FUSE_UNIQUE_RESEND, at + S_UNIQUE);
    v.writeUInt32LE(req.readUInt32LE(InHeader.opcode), at + S_OPCODE);
    v.writeUInt32LE(INTENT, at + S_STATE);
    const rep = await this.server.handle(req);
    if (rep && rep.length <= MAX_REPLY) {
      rep.copy(v, at + S_REPLY);
      v.writeUInt32LE(rep.length, at + S_LEN);
      v.writeUInt32LE(DONE, at + S_STATE);
    }
    return rep;
  }

  private async resent(req: Buffer, unique: bigint): Promise<Buffer | null> {
    const at = this.slot(unique);
    const v = this.view;
    const mine = v.readBigUInt64LE(at + S_UNIQUE) === (unique & ~FUSE_UNIQUE_RESEND) && v.readUInt32LE(at + S_OPCODE) === req.readUInt32LE(InHeader.opcode);
    const state = mine ? v.readUInt32LE(at + S_STATE) : 0;
    if (state === DONE) {
      this.counters.resentDone++;
      const rep = Buffer.from(v.subarray(at + S_REPLY, at + S_REPLY + v.readUInt32LE(at + S_LEN)));
      rep.writeBigUInt64LE(unique, OutHeader.unique);
      return req.readUInt32LE(InHeader.opcode) === Op.CREATE && errorOf(rep) === 0 ? this.reopened(req, rep) : rep;
    }
    // no slot of its own: the predecessor died before it began (the intent is written first)
    if (state !== INTENT) {
      this.counters.resentRerun++;
      return this.journaled(req, at);
    }
    const answer = await this.establish(req, unique);
    if (answer === 'rerun') {
      this.counters.resentRerun++;
      return this.journaled(req, at);
    }
    if (errorOf(answer) === -E.EIO) this.counters.resentEio++;
    else this.counters.resentEstablished++;
    return answer;
  }

  /** An intent without a result: the reply the request had, or 'rerun' when it was not done. */
  private async establish(req: Buffer, unique: bigint): Promise<Buffer | 'rerun'> {
    const op = req.readUInt32LE(InHeader.opcode);
    const eio = encodeError(unique, E.EIO);
    const at = NAME_AT.get(op);
    if (at === undefined || (op === Op.RENAME2 && (req.readUInt32LE(IN + Rename2In.flags) & RENAME_EXCHANGE) !== 0)) return eio;
    const name = nameAt(req, at);
    if (!name) return eio;
    const parent = req.readBigUInt64LE(InHeader.nodeid);
    const found = await this.server.handle(request(req, Op.LOOKUP, parent, Buffer.concat([name, Buffer.alloc(1)])));
    if (!found || found.length < OutHeader.SIZE) return eio;
    const err = errorOf(found);
    if (err !== 0 && err !== -E.ENOENT) return eio;
    if (MAKES_NAME.has(op)) {
      if (err !== 0) return 'rerun';
      found.writeBigUInt64LE(unique, OutHeader.unique);
      // a link is ours only if the name is the inode linked
      if (op === Op.LINK && found.readBigUInt64LE(OutHeader.SIZE + EntryOut.nodeid) !== req.readBigUInt64LE(IN + LinkIn.oldnodeid)) {
        this.forget(req, found);
        return eio;
      }
      if (op !== Op.CREATE) return found;
      const rep = Buffer.alloc(OutHeader.SIZE + EntryOut.SIZE + OpenOut.SIZE);
      found.copy(rep, 0, 0, OutHeader.SIZE + EntryOut.SIZE);
      rep.writeUInt32LE(rep.length, OutHeader.len);
      return this.reopened(req, rep);
    }
    // unlink, rmdir, rename: the name is gone, so it was done
    if (err !== 0) return allocReply(unique, 0);
    this.forget(req, found);
    return 'rerun';
  }

  /** Drop the lookup `entry` reply counted, which no one will see. */
  private forget(like: Buffer, entry: Buffer): void {
    const body = Buffer.alloc(ForgetIn.SIZE);
    body.writeBigUInt64LE(1n, ForgetIn.nlookup);
    void this.server.handle(request(like, Op.FORGET, entry.readBigUInt64LE(OutHeader.SIZE + EntryOut.nodeid), body));
  }

  /** A create's entry reply `rep` with a new open file of its inode (the recorded one died with its worker). */
  private async reopened(req: Buffer, rep: Buffer): Promise<Buffer> {
    const unique = req.readBigUInt64LE(InHeader.unique);
    const body = Buffer.alloc(OpenIn.SIZE);
    body.writeUInt32LE(req.readUInt32LE(IN + CreateIn.flags) & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY), OpenIn.flags);
    const opened = await this.server.handle(request(req, Op.OPEN, rep.readBigUInt64LE(OutHeader.SIZE + EntryOut.nodeid), body));
    if (!opened || errorOf(opened) !== 0 || opened.length < OutHeader.SIZE + OpenOut.SIZE) {
      this.forget(req, rep);
      return encodeError(unique, E.EIO);
    }
    opened.copy(rep, OutHeader.SIZE + EntryOut.SIZE, OutHeader.SIZE, OutHeader.SIZE + OpenOut.SIZE);
    return rep;
  }
}
