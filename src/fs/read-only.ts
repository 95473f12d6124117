import { erofs } from '../errors.js';
import { O_ACCMODE, O_RDONLY, O_TRUNC } from '../sys/constants.js';
import type { FileSystem } from './filesystem.js';
import type {
  AttrReply, Context, CreateOut, DirEntry, Entry, FileLock, InitOptions, OpenOut, SetattrIn, StatfsOut, XattrReply,
} from './types.js';

/** EROFS for every mutation, the rest passes through (virtiofsd read_only.rs). */
export class ReadOnlyFs implements FileSystem {
  constructor(private readonly inner: FileSystem) {}
  init(o: InitOptions): Promise<void> { return this.inner.init({ ...o, writeback: false }); }
  destroy(): Promise<void> { return this.inner.destroy(); }
  lookup(c: Context, p: bigint, n: Buffer): Promise<Entry> { return this.inner.lookup(c, p, n); }
  forget(c: Context, n: bigint, k: bigint): void { this.inner.forget(c, n, k); }
  batchForget(c: Context, items: ReadonlyArray<{ nodeid: bigint; nlookup: bigint }>): void { this.inner.batchForget(c, items); }
  getattr(c: Context, n: bigint, fh?: bigint): Promise<AttrReply> { return this.inner.getattr(c, n, fh); }
  async setattr(_c: Context, _n: bigint, _s: SetattrIn): Promise<AttrReply> { throw erofs(); }
  statx(c: Context, n: bigint, fh: bigint | undefined, f: number, m: number): Promise<AttrReply> { return this.inner.statx(c, n, fh, f, m); }
  readlink(c: Context, n: bigint): Promise<Buffer> { return this.inner.readlink(c, n); }
  async symlink(): Promise<Entry> { throw erofs(); }
  async mknod(): Promise<Entry> { throw erofs(); }
  async mkdir(): Promise<Entry> { throw erofs(); }
  async unlink(): Promise<void> { throw erofs(); }
  async rmdir(): Promise<void> { throw erofs(); }
  async rename(): Promise<void> { throw erofs(); }
  async link(): Promise<Entry> { throw erofs(); }
  open(c: Context, n: bigint, flags: number, killSuidgid?: boolean): Promise<OpenOut> {
    if ((flags & O_ACCMODE) !== O_RDONLY || flags & O_TRUNC) return Promise.reject(erofs());
    return this.inner.open(c, n, flags, killSuidgid);
  }
  async create(): Promise<CreateOut> { throw erofs(); }
  async tmpfile(): Promise<CreateOut> { throw erofs(); }
  read(c: Context, n: bigint, fh: bigint, o: number, s: number, into?: Buffer): Promise<Buffer> { return this.inner.read(c, n, fh, o, s, into); }
  async write(): Promise<number> { throw erofs(); }
  flush(c: Context, n: bigint, fh: bigint, l: bigint): Promise<void> { return this.inner.flush(c, n, fh, l); }
  fsync(c: Context, n: bigint, fh: bigint, d: boolean): Promise<void> { return this.inner.fsync(c, n, fh, d); }
  async fallocate(): Promise<void> { throw erofs(); }
  release(c: Context, n: bigint, fh: bigint, f: number, l: bigint, fr: boolean): Promise<void> { return this.inner.release(c, n, fh, f, l, fr); }
  lseek(c: Context, n: bigint, fh: bigint, o: bigint, w: number): Promise<bigint> { return this.inner.lseek(c, n, fh, o, w); }
  async copyFileRange(): Promise<number> { throw erofs(); }
  statfs(c: Context, n: bigint): Promise<StatfsOut> { return this.inner.statfs(c, n); }
  syncfs(c: Context, n: bigint): Promise<void> { return this.inner.syncfs(c, n); }
  async setxattr(): Promise<void> { throw erofs(); }
  getxattr(c: Context, n: bigint, k: Buffer, s: number): Promise<XattrReply> { return this.inner.getxattr(c, n, k, s); }
  listxattr(c: Context, n: bigint, s: number): Promise<XattrReply> { return this.inner.listxattr(c, n, s); }
  async removexattr(): Promise<void> { throw erofs(); }
  opendir(c: Context, n: bigint, f: number): Promise<OpenOut> { return this.inner.opendir(c, n, f); }
  readdir(c: Context, n: bigint, fh: bigint, o: bigint, s: number, a: (e: DirEntry) => boolean): Promise<void> { return this.inner.readdir(c, n, fh, o, s, a); }
  readdirplus(c: Context, n: bigint, fh: bigint, o: bigint, s: number, a: (e: DirEntry, en: Entry | null) => boolean): Promise<void> { return this.inner.readdirplus(c, n, fh, o, s, a); }
  releasedir(c: Context, n: bigint, fh: bigint): Promise<void> { return this.inner.releasedir(c, n, fh); }
  fsyncdir(c: Context, n: bigint, fh: bigint, d: boolean): Promise<void> { return this.inner.fsyncdir(c, n, fh, d); }
  access(c: Context, n: bigint, m: number): Promise<void> { return this.inner.access(c, n, m); }
  getlk(c: Context, n: bigint, fh: bigint, o: bigint, l: FileLock): Promise<FileLock> { return this.inner.getlk(c, n, fh, o, l); }
  setlk(c: Context, n: bigint, fh: bigint, o: bigint, l: FileLock, s: boolean, f: boolean): Promise<void> { return this.inner.setlk(c, n, fh, o, l, s, f); }
}
