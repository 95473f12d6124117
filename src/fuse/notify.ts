/**
 * Notifications the server sends unasked (fuse_lowlevel_notify_inval_entry/_inode in libfuse): the
 * core's host-change listener (src/fs/options.ts) turned into the messages a transport writes to
 * /dev/fuse. A notification is an OutHeader with unique 0 and `error` set to its code.
 *
 * The kernel handles one inside the write(2) that delivers it, taking the parent directory's lock
 * (an entry) or the pages' locks (an inode); a request of the client may hold those locks while it
 * waits for this server's reply. A transport must therefore never write one from the thread that
 * answers requests (libfuse: "don't call this function from a filesystem operation").
 */
import type { HostChangeListener } from '../fs/options.js';
import {
  FUSE_NOTIFY_INVAL_ENTRY, FUSE_NOTIFY_INVAL_INODE, NotifyInvalEntryOut, NotifyInvalInodeOut, OutHeader, w64,
} from './abi.js';

function header(size: number, code: number): Buffer {
  const b = Buffer.alloc(OutHeader.SIZE + size);
  b.writeUInt32LE(b.length, OutHeader.len);
  b.writeInt32LE(code, OutHeader.error);
  return b;
}

/** FUSE_NOTIFY_INVAL_ENTRY: the client drops its entry for `name` in `parent` (and the parent's attributes). */
export function encodeInvalEntry(parent: bigint, name: Buffer): Buffer {
  const o = OutHeader.SIZE;
  // the name is followed by a NUL (Buffer.alloc zeroes it)
  const b = header(NotifyInvalEntryOut.SIZE + name.length + 1, FUSE_NOTIFY_INVAL_ENTRY);
  w64(b, parent, o + NotifyInvalEntryOut.parent);
  b.writeUInt32LE(name.length, o + NotifyInvalEntryOut.namelen);
  name.copy(b, o + NotifyInvalEntryOut.SIZE);
  return b;
}

/** FUSE_NOTIFY_INVAL_INODE: the client drops `nodeid`'s attributes, and all its cached pages when `data`. */
export function encodeInvalInode(nodeid: bigint, data: boolean): Buffer {
  const o = OutHeader.SIZE;
  const b = header(NotifyInvalInodeOut.SIZE, FUSE_NOTIFY_INVAL_INODE);
  w64(b, nodeid, o + NotifyInvalInodeOut.ino);
  // off 0, len 0: every page; off -1: none
  b.writeBigInt64LE(data ? 0n : -1n, o + NotifyInvalInodeOut.off);
  return b;
}

/** The core's listener, each invalidation encoded and handed to `send` (the transport's writer). */
export function notificationsTo(send: (msg: Buffer) => void): HostChangeListener {
  return {
    invalEntry: (parent, name) => send(encodeInvalEntry(parent, name)),
    invalInode: (nodeid, data) => send(encodeInvalInode(nodeid, data)),
  };
}
