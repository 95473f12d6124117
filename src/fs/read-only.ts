import { erofs } from '../errors.js';
import { O_ACCMODE, O_RDONLY, O_TRUNC } from '../sys/constants.js';
import { ForwardingFs } from './forwarding.js';
import type { AttrReply, Context, CreateOut, Entry, InitOptions, OpenOut } from './types.js';

/** EROFS for every mutation, the rest passes through (virtiofsd read_only.rs). */
export class ReadOnlyFs extends ForwardingFs {
  override init(o: InitOptions): Promise<void> { return this.inner.init({ ...o, writeback: false }); }
  override async setattr(): Promise<AttrReply> { throw erofs(); }
  override async symlink(): Promise<Entry> { throw erofs(); }
  override async mknod(): Promise<Entry> { throw erofs(); }
  override async mkdir(): Promise<Entry> { throw erofs(); }
  override async unlink(): Promise<void> { throw erofs(); }
  override async rmdir(): Promise<void> { throw erofs(); }
  override async rename(): Promise<void> { throw erofs(); }
  override async link(): Promise<Entry> { throw erofs(); }
  override open(c: Context, n: bigint, flags: number, killSuidgid?: boolean): Promise<OpenOut> {
    if ((flags & O_ACCMODE) !== O_RDONLY || flags & O_TRUNC) return Promise.reject(erofs());
    return this.inner.open(c, n, flags, killSuidgid);
  }
  override async create(): Promise<CreateOut> { throw erofs(); }
  override async tmpfile(): Promise<CreateOut> { throw erofs(); }
  override async write(): Promise<number> { throw erofs(); }
  override async writeMapped(): Promise<number> { throw erofs(); }
  override async fallocate(): Promise<void> { throw erofs(); }
  override async copyFileRange(): Promise<number> { throw erofs(); }
  override async setxattr(): Promise<void> { throw erofs(); }
  override async removexattr(): Promise<void> { throw erofs(); }
}
