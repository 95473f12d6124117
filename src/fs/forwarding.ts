import type { FsError } from '../errors.js';
import type { FileSystem } from './filesystem.js';
import type { MappedSeg } from '../sys/syscalls.js';
import type {
  AttrReply, Context, CreateOut, DeviceNumber, DirEntry, Entry, FileLock, FileOffset, InitOptions, OpenOut, SetattrIn,
  StatfsOut, XattrReply,
} from './types.js';

/**
 * A FileSystem that hands every operation to `inner` unchanged: the base of the decorators
 * (read-only.ts, idmap-fs.ts), which override what they change.
 */
export class ForwardingFs implements FileSystem {
  constructor(protected readonly inner: FileSystem) {}
  init(o: InitOptions): Promise<void> { return this.inner.init(o); }
  destroy(): Promise<void> { return this.inner.destroy(); }
  lookup(c: Context, p: bigint, n: Buffer): Promise<Entry | FsError> { return this.inner.lookup(c, p, n); }
  forget(c: Context, n: bigint, k: bigint): void { this.inner.forget(c, n, k); }
  batchForget(c: Context, items: ReadonlyArray<{ nodeid: bigint; nlookup: bigint }>): void { this.inner.batchForget(c, items); }
  getattr(c: Context, n: bigint, fh?: bigint): Promise<AttrReply> { return this.inner.getattr(c, n, fh); }
  setattr(c: Context, n: bigint, s: SetattrIn): Promise<AttrReply> { return this.inner.setattr(c, n, s); }
  statx(c: Context, n: bigint, fh: bigint | undefined, f: number, m: number): Promise<AttrReply> { return this.inner.statx(c, n, fh, f, m); }
  readlink(c: Context, n: bigint): Promise<Buffer> { return this.inner.readlink(c, n); }
  symlink(c: Context, t: Buffer, p: bigint, n: Buffer): Promise<Entry> { return this.inner.symlink(c, t, p, n); }
  mknod(c: Context, p: bigint, n: Buffer, m: number, r: DeviceNumber, u: number): Promise<Entry> { return this.inner.mknod(c, p, n, m, r, u); }
  mkdir(c: Context, p: bigint, n: Buffer, m: number, u: number): Promise<Entry> { return this.inner.mkdir(c, p, n, m, u); }
  unlink(c: Context, p: bigint, n: Buffer): Promise<void> { return this.inner.unlink(c, p, n); }
  rmdir(c: Context, p: bigint, n: Buffer): Promise<void> { return this.inner.rmdir(c, p, n); }
  rename(c: Context, od: bigint, on: Buffer, nd: bigint, nn: Buffer, f: number): Promise<void> { return this.inner.rename(c, od, on, nd, nn, f); }
  link(c: Context, n: bigint, np: bigint, nn: Buffer): Promise<Entry> { return this.inner.link(c, n, np, nn); }
  open(c: Context, n: bigint, flags: number, k?: boolean): Promise<OpenOut> { return this.inner.open(c, n, flags, k); }
  create(c: Context, p: bigint, n: Buffer, m: number, f: number, u: number): Promise<CreateOut> { return this.inner.create(c, p, n, m, f, u); }
  tmpfile(c: Context, p: bigint, m: number, f: number, u: number): Promise<CreateOut> { return this.inner.tmpfile(c, p, m, f, u); }
  read(c: Context, n: bigint, fh: bigint, o: number, s: number, into?: Buffer): Promise<Buffer> { return this.inner.read(c, n, fh, o, s, into); }
  write(c: Context, n: bigint, fh: bigint, o: number, d: Buffer, w: number): Promise<number> { return this.inner.write(c, n, fh, o, d, w); }
  readMapped(c: Context, n: bigint, fh: bigint, o: number, s: number, i: MappedSeg[]): Promise<number> { return this.inner.readMapped(c, n, fh, o, s, i); }
  writeMapped(c: Context, n: bigint, fh: bigint, o: number, f: MappedSeg[], w: number): Promise<number> { return this.inner.writeMapped(c, n, fh, o, f, w); }
  flush(c: Context, n: bigint, fh: bigint, l: bigint): Promise<void> { return this.inner.flush(c, n, fh, l); }
  fsync(c: Context, n: bigint, fh: bigint, d: boolean): Promise<void> { return this.inner.fsync(c, n, fh, d); }
  fallocate(c: Context, n: bigint, fh: bigint, m: number, o: FileOffset, l: FileOffset): Promise<void> { return this.inner.fallocate(c, n, fh, m, o, l); }
  release(c: Context, n: bigint, fh: bigint, f: number, l: bigint, fr: boolean): Promise<void> { return this.inner.release(c, n, fh, f, l, fr); }
  lseek(c: Context, n: bigint, fh: bigint, o: bigint, w: number): Promise<bigint> { return this.inner.lseek(c, n, fh, o, w); }
  copyFileRange(c: Context, ni: bigint, fi: bigint, oi: FileOffset, no: bigint, fo: bigint, oo: FileOffset, l: number, f: number): Promise<number> {
    return this.inner.copyFileRange(c, ni, fi, oi, no, fo, oo, l, f);
  }
  statfs(c: Context, n: bigint): Promise<StatfsOut> { return this.inner.statfs(c, n); }
  syncfs(c: Context, n: bigint): Promise<void> { return this.inner.syncfs(c, n); }
  setxattr(c: Context, n: bigint, k: Buffer, v: Buffer, f: number): Promise<void> { return this.inner.setxattr(c, n, k, v, f); }
  getxattr(c: Context, n: bigint, k: Buffer, s: number): Promise<XattrReply | FsError> { return this.inner.getxattr(c, n, k, s); }
  listxattr(c: Context, n: bigint, s: number): Promise<XattrReply> { return this.inner.listxattr(c, n, s); }
  removexattr(c: Context, n: bigint, k: Buffer): Promise<void> { return this.inner.removexattr(c, n, k); }
  opendir(c: Context, n: bigint, f: number): Promise<OpenOut> { return this.inner.opendir(c, n, f); }
  readdir(c: Context, n: bigint, fh: bigint, o: bigint, s: number, a: (e: DirEntry) => boolean): Promise<void> { return this.inner.readdir(c, n, fh, o, s, a); }
  readdirplus(c: Context, n: bigint, fh: bigint, o: bigint, s: number, a: (e: DirEntry, en: Entry | null) => boolean): Promise<void> { return this.inner.readdirplus(c, n, fh, o, s, a); }
  releasedir(c: Context, n: bigint, fh: bigint): Promise<void> { return this.inner.releasedir(c, n, fh); }
  fsyncdir(c: Context, n: bigint, fh: bigint, d: boolean): Promise<void> { return this.inner.fsyncdir(c, n, fh, d); }
  access(c: Context, n: bigint, m: number): Promise<void> { return this.inner.access(c, n, m); }
  getlk(c: Context, n: bigint, fh: bigint, o: bigint, l: FileLock): Promise<FileLock> { return this.inner.getlk(c, n, fh, o, l); }
  setlk(c: Context, n: bigint, fh: bigint, o: bigint, l: FileLock, s: boolean, f: boolean): Promise<void> { return this.inner.setlk(c, n, fh, o, l, s, f); }
}
