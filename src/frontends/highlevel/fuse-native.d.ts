/**
 * The part of fuse-native 2.2.6 (CommonJS, untyped) that the high-level frontend uses, as read
 * from its index.js and fuse-native.c. The underscore methods are that version's per-op
 * dispatchers, which mount.ts overrides where the public op API loses information (buffer sizes
 * for xattrs, the fh of fgetattr).
 */
declare module 'fuse-native' {
  type Cb = (code: number, ...rest: unknown[]) => void;

  namespace Fuse {
    /** The stat object fuse-native encodes (getStatArray): times as ms numbers or Dates. */
    interface FuseStat {
      mode: number; uid: number; gid: number; size: number; dev: number; nlink: number; ino: number;
      rdev: number; blksize: number; blocks: number; atime: number | Date; mtime: number | Date; ctime: number | Date;
    }

    interface FuseStatfs {
      bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number;
      ffree: number; favail: number; fsid: number; flag: number; namemax: number;
    }

    interface FuseOps {
      init?(cb: (code: number) => void): void;
      access?(path: string, mode: number, cb: (code: number) => void): void;
      statfs?(path: string, cb: (code: number, st?: FuseStatfs) => void): void;
      getattr?(path: string, cb: (code: number, st?: FuseStat) => void): void;
      fgetattr?(path: string, fd: number, cb: (code: number, st?: FuseStat) => void): void;
      flush?(path: string, fd: number, cb: (code: number) => void): void;
      /** argument order as index.js 2.2.6 passes it (its README says fd, datasync) */
      fsync?(path: string, datasync: number, fd: number, cb: (code: number) => void): void;
      fsyncdir?(path: string, datasync: number, fd: number, cb: (code: number) => void): void;
      readdir?(path: string, cb: (code: number, names?: string[], stats?: FuseStat[]) => void): void;
      truncate?(path: string, size: number, cb: (code: number) => void): void;
      ftruncate?(path: string, fd: number, size: number, cb: (code: number) => void): void;
      utimens?(path: string, atime: number, mtime: number, cb: (code: number) => void): void;
      readlink?(path: string, cb: (code: number, target?: string) => void): void;
      chown?(path: string, uid: number, gid: number, cb: (code: number) => void): void;
      chmod?(path: string, mode: number, cb: (code: number) => void): void;
      mknod?(path: string, mode: number, dev: number, cb: (code: number) => void): void;
      setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: (code: number) => void): void;
      getxattr?(path: string, name: string, position: number, cb: (code: number, value?: Buffer) => void): void;
      listxattr?(path: string, cb: (code: number, list?: string[]) => void): void;
      removexattr?(path: string, name: string, cb: (code: number) => void): void;
      open?(path: string, flags: number, cb: (code: number, fd?: number) => void): void;
      opendir?(path: string, flags: number, cb: (code: number, fd?: number) => void): void;
      /** cb(bytesRead) or cb(-errno) */
      read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (code: number) => void): void;
      /** cb(bytesWritten) or cb(-errno) */
      write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (code: number) => void): void;
      release?(path: string, fd: number, cb: (code: number) => void): void;
      releasedir?(path: string, fd: number, cb: (code: number) => void): void;
      create?(path: string, mode: number, cb: (code: number, fd?: number) => void): void;
      unlink?(path: string, cb: (code: number) => void): void;
      rename?(src: string, dest: string, cb: (code: number) => void): void;
      link?(src: string, dest: string, cb: (code: number) => void): void;
      symlink?(target: string, path: string, cb: (code: number) => void): void;
      mkdir?(path: string, mode: number, cb: (code: number) => void): void;
      rmdir?(path: string, cb: (code: number) => void): void;
    }

    interface FuseOpts {
      force?: boolean; mkdir?: boolean; debug?: boolean; allowOther?: boolean; defaultPermissions?: boolean;
      fsname?: string; subtype?: string; timeout?: number | false | Record<string, number | false>;
      [k: string]: unknown;
    }

  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.FuseOps, opts?: Fuse.FuseOpts);
    readonly mnt: string;
    readonly opts: Fuse.FuseOpts;
    readonly ops: Fuse.FuseOps;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    _fuseOptions(): string;
    _op_fgetattr(signal: Cb, path: string, fd: number): void;
    _op_getxattr(signal: Cb, path: string, name: string, valueBuf: Buffer, position: number): void;
    _op_listxattr(signal: Cb, path: string, listBuf: Buffer): void;
  }

  export = Fuse;
}
