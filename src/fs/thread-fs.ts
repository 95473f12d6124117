/**
 * The filesystem as a serving thread other than its owner sees it: reads, writes, fsyncs and
 * FLUSHes of open files whose fds the owner published (SharedFileTable), done here with the same
 * I/O as the owner's (NowaitIo, O_APPEND, FUSE_WRITE_KILL_SUIDGID), and a RELEASE's flock unlock.
 * Everything else (the RELEASE itself too), and an open
 * file the owner has not published (evicted, a directory, a FLUSH that must drop locks), is
 * declined: the thread hands the request to the owner, which answers it on this thread's channel.
 */
import { DECLINE, E, FsError } from '../errors.js';
import { sys, LOCK_UN, O_APPEND } from '../sys/syscalls.js';
import { killSuidgid } from './attrs.js';
import { NowaitIo } from './data-io.js';
import type { FileSystem } from './filesystem.js';
import type { FsCounters } from './services.js';
import { SHARED_LOCK_OWNERS, type SharedFile, type SharedFileTable } from './shared-files.js';
import { WRITE_KILL_SUIDGID, type Context, type InitOptions } from './types.js';

/** What this thread did: requests it answered from the table, and the ones it declined. */
export interface ThreadFsCounters {
  served: number;
  declined: number;
}

class ThreadFiles {
  private readonly io: NowaitIo;
  private killPrivV2 = false;
  private readonly f: SharedFile = { fd: -1, flags: 0, dev: 0, marks: 0 };
  readonly counters: ThreadFsCounters = { served: 0, declined: 0 };

  constructor(private readonly table: SharedFileTable, fsCounters: FsCounters) {
    this.io = new NowaitIo(fsCounters);
  }

  async init(opts: InitOptions): Promise<void> {
    this.killPrivV2 = opts.killPrivV2;
  }

  async destroy(): Promise<void> {
    /* the owner releases every fd */
  }

  async read(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, size: number, into?: Buffer): Promise<Buffer> {
    const slot = this.borrow(fh, nodeid);
    try {
      if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
      this.counters.served++;
      const { fd, dev } = this.table.fileAt(slot, this.f);
      const buf = into && into.length >= size ? into : Buffer.allocUnsafe(size);
      const n = await this.io.read(fd, buf, size, offset, dev);
      return n === size ? buf : buf.subarray(0, n);
    } finally {
      this.table.release(slot);
    }
  }

  async write(_ctx: Context, nodeid: bigint, fh: bigint, offset: number, data: Buffer, writeFlags: number): Promise<number> {
    const slot = this.borrow(fh, nodeid);
    try {
      if (!Number.isSafeInteger(offset) || offset < 0) throw new FsError(E.EINVAL);
      this.counters.served++;
      const { fd, flags, dev } = this.table.fileAt(slot, this.f);
      const n = await this.io.write(fd, data, flags & O_APPEND ? -1 : offset, dev);
      if (this.killPrivV2 && writeFlags & WRITE_KILL_SUIDGID) killSuidgid(fd);
      return n;
    } finally {
      this.table.release(slot);
    }
  }

  async flush(_ctx: Context, nodeid: bigint, fh: bigint): Promise<void> {
    const slot = this.borrow(fh, nodeid);
    const { marks } = this.table.fileAt(slot, this.f);
    this.table.release(slot);
    // the owner drops the locks a closing lock owner took (Files.flush)
    if (marks & SHARED_LOCK_OWNERS) this.decline();
    this.counters.served++;
  }

  async fsync(_ctx: Context, nodeid: bigint, fh: bigint, datasync: boolean): Promise<void> {
    const slot = this.borrow(fh, nodeid);
    try {
      this.counters.served++;
      await sys.fsyncAsync(this.table.fileAt(slot, this.f).fd, datasync);
    } finally {
      this.table.release(slot);
    }
  }

  /**
   * RELEASE is the owner's (the fh, its fd, the inode's count), but a flock on the file is dropped
   * here first: the kernel sends RELEASE without waiting for it, so the client's next flock may
   * reach the owner before this RELEASE does, and must find the lock gone, as it would on the host.
   */
  async release(_ctx: Context, nodeid: bigint, fh: bigint, _flags: number, _lockOwner: bigint, flockRelease: boolean): Promise<void> {
    if (flockRelease) {
      const slot = this.table.borrow(fh, nodeid);
      if (slot >= 0) {
        try {
          sys.flock(this.table.fileAt(slot, this.f).fd, LOCK_UN);
        } catch {
          /* nothing held */
        } finally {
          this.table.release(slot);
        }
      }
    }
    this.decline();
  }

  private borrow(fh: bigint, nodeid: bigint): number {
    const slot = this.table.borrow(fh, nodeid);
    if (slot < 0) this.decline();
    return slot;
  }

  decline(): never {
    this.counters.declined++;
    throw DECLINE;
  }
}

/**
 * A FileSystem for a serving thread: the methods above; every other one declines (ProtocolServer
 * turns DECLINE into its DECLINED reply, which the thread forwards to the owner).
 */
export function threadFs(table: SharedFileTable, fsCounters: FsCounters): { fs: FileSystem; counters: ThreadFsCounters } {
  const files = new ThreadFiles(table, fsCounters);
  const own: Record<string | symbol, unknown> = {};
  for (const k of ['init', 'destroy', 'read', 'write', 'flush', 'fsync', 'release'] as const) own[k] = files[k].bind(files);
  const declined = (): never => files.decline();
  // a Proxy so that every FileSystem method exists; the ProtocolServer's localOps keep the others from being called at all
  const fs = new Proxy(own, { get: (t, k) => (k in t ? t[k] : declined) }) as unknown as FileSystem;
  return { fs, counters: files.counters };
}
