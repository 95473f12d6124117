/**
 * What a serving thread other than the owner serves with, whatever its channel (a /dev/fuse clone
 * or ring, src/frontends/devfuse/thread-worker.ts; a virtio-fs request queue,
 * src/frontends/vhost-user/queue-worker.ts): a protocol server over the filesystem as that thread
 * sees it (src/fs/thread-fs.ts), through the fds and the inode table the owner shares. It answers
 * what it can and declines the rest (DECLINED), which the thread hands to the owner.
 */
import type { LevelWithSilent, Logger } from 'pino';
import { decorate } from '../fs/decorate.js';
import { MoveWatch } from '../fs/move-watch.js';
import { newFsCounters } from '../fs/services.js';
import { SharedFileTable, SharedRemovalGate } from '../fs/shared-files.js';
import { SharedInodes, type SharedInodeLink, type SharedInodeTables } from '../fs/shared-inodes.js';
import { threadFs, type ThreadFsCounters } from '../fs/thread-fs.js';
import { enosysOpcodes, Op, opcodeName } from '../fuse/opcodes.js';
import { ProtocolServer } from '../fuse/protocol-server.js';
import { childLogger, makeLogger } from '../log.js';

/** The tables the owner shares with its serving threads (the SharedArrayBuffer of each). */
export interface SharedTables {
  files: SharedArrayBuffer;
  inodes: SharedArrayBuffer;
  /** SharedRemovalGate.buffer */
  removals: SharedArrayBuffer;
}

/** The options a serving thread's filesystem and protocol server take from the configuration. */
export interface ThreadFsOptions {
  maxWrite: number;
  /** the cache policy's attribute timeout */
  attrTimeoutMs: number;
  /** the shared root's real path, for the proofs behind LOOKUP's negative answers (ThreadFsSettings; null: none) */
  rootPath: Uint8Array | null;
  /** GETXATTR is the host's getxattr (ThreadFsSettings) */
  plainXattrs: boolean;
  /** the root's mount id and name_to_handle_at's flags (ThreadFsSettings) */
  rootMount: bigint;
  handleFlags: number;
  readonly: boolean;
  translateUid: readonly string[];
  translateGid: readonly string[];
}

/** What the owner starts its other serving threads with (ServingThreads, QueueThreads). */
export interface ThreadPlan {
  /** serving threads, the owner included */
  count: number;
  tables: SharedTables;
  fs: ThreadFsOptions;
  log: Logger;
  /** called when a thread dies of a bug: the caller stops serving */
  onFatal: (why: string) => void;
  /** the owner's inode table, which the threads read to answer LOOKUPs of known inodes (null: they hand those over) */
  inodeTable: SharedInodeLink | null;
}

/** What a serving thread is started with, whatever its channel. */
export interface ThreadServerData {
  index: number;
  tables: SharedTables;
  fs: ThreadFsOptions;
  logLevel: string;
  /** the owner's inode table as it is at the start; each growth comes as an InodeTableUpdate message */
  inodeTable: SharedInodeTables | null;
}

/** The owner's inode table grew (a chunk, a bigger index): sent to each thread's worker. */
export interface InodeTableUpdate {
  inodeTable: SharedInodeTables;
}

/**
 * The opcodes a thread other than the owner has a handler for (ThreadFiles, and the ENOSYS the
 * owner answers without looking); it may still decline one of them (an unknown inode, an fd not
 * published), the others it hands over unread.
 */
export const THREAD_OPS: ReadonlySet<number> = new Set([
  Op.LOOKUP, Op.GETATTR, Op.SETATTR, Op.STATX, Op.READLINK, Op.GETXATTR, Op.UNLINK, Op.RMDIR, Op.READ, Op.WRITE, Op.FSYNC, Op.FLUSH,
  ...enosysOpcodes(),
]);

/** Opcodes counted apart in HandedOps: the last bucket holds every opcode from it up. */
const HANDED_OPS = 64;

/** Per thread, the requests it handed to the owner by opcode, in shared memory (each thread writes its own row). */
export class HandedOps {
  readonly counts: Float64Array;

  constructor(buffer: SharedArrayBuffer | number) {
    this.counts = new Float64Array(typeof buffer === 'number' ? new SharedArrayBuffer(buffer * HANDED_OPS * 8) : buffer);
  }

  get buffer(): SharedArrayBuffer {
    return this.counts.buffer as SharedArrayBuffer;
  }

  /** Count `req` (a FUSE request: its opcode) as handed over by `thread`. */
  count(thread: number, req: Buffer): void {
    if (req.length >= 8) this.counts[thread * HANDED_OPS + Math.min(req.readUInt32LE(4), HANDED_OPS - 1)]!++;
  }

  /** What `thread` handed over, by opcode name. */
  byName(thread: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (let op = 0; op < HANDED_OPS; op++) {
      const n = this.counts[thread * HANDED_OPS + op]!;
      if (n > 0) out[op === HANDED_OPS - 1 ? `${opcodeName(op)}+` : opcodeName(op)] = n;
    }
    return out;
  }
}

/**
 * HANDLEFS_TEST_THREAD_FAULT=NAME (tests only): a LOOKUP of NAME that a serving thread other than
 * the owner reads makes it die as a bug would (an exception thrown outside any request), so that
 * the tests can see the server stop instead of leaving that request's caller waiting. True when
 * `req` is that LOOKUP: the thread leaves it unanswered.
 */
export function testFault(req: Buffer): boolean {
  if (faultName === null || req.length < IN_HEADER || req.readUInt32LE(4) !== Op.LOOKUP || !req.subarray(IN_HEADER).equals(faultName)) return false;
  setImmediate(() => {
    throw new Error(`HANDLEFS_TEST_THREAD_FAULT: LOOKUP of ${faultName.toString('utf8', 0, faultName.length - 1)}`);
  });
  return true;
}
const faultName = process.env.HANDLEFS_TEST_THREAD_FAULT ? Buffer.from(`${process.env.HANDLEFS_TEST_THREAD_FAULT}\0`) : null;
/** fuse_in_header's size: a LOOKUP's name follows it */
const IN_HEADER = 40;

export interface ThreadServer {
  server: ProtocolServer;
  counters: ThreadFsCounters;
  /** what the owner answers ENOSYS without looking (IOCTL: each isatty() of an open file sends one) */
  enosys: ReadonlySet<number>;
  log: Logger;
  /** an InodeTableUpdate for this thread: true when it was one */
  update(m: unknown): boolean;
  close(): void;
}

/** The thread's protocol server, not yet negotiated: adopt() the owner's INIT before serving. */
export function threadServer(d: ThreadServerData, extraLog: Record<string, unknown> = {}): ThreadServer {
  const log = makeLogger(d.logLevel as LevelWithSilent, { thread: d.index, ...extraLog });
  const tables = {
    files: SharedFileTable.attach(d.tables.files), inodes: SharedFileTable.attach(d.tables.inodes), removals: SharedRemovalGate.attach(d.tables.removals),
  };
  // this thread's own rename watch, for the proofs of place it keeps (as the owner's MoveWatch does)
  const moves = d.fs.rootPath !== null ? new MoveWatch(Buffer.from(d.fs.rootPath), childLogger('moves', log)) : null;
  // the owner's inode table, for LOOKUPs of inodes it knows; each growth comes as a message
  const inodeTable = d.inodeTable !== null ? new SharedInodes() : null;
  if (inodeTable !== null) inodeTable.update(d.inodeTable!);
  const { fs: own, counters } = threadFs(tables, newFsCounters(), d.fs, moves, inodeTable);
  // the same id translation and read-only refusal as the owner's filesystem
  const fs = decorate(own, d.fs);
  const server = new ProtocolServer(fs, { maxWrite: d.fs.maxWrite, localOps: THREAD_OPS }, childLogger('fuse', log));
  return {
    server, counters, enosys: new Set(enosysOpcodes()), log,
    update: (m) => {
      const t = (m as Partial<InodeTableUpdate> | null)?.inodeTable;
      if (t === undefined) return false;
      inodeTable?.update(t);
      return true;
    },
    close: () => moves?.close(),
  };
}
