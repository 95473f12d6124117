import { STATX_BTIME } from './constants.js';

/** Index of each field in the BigUint64Array filled by statx() (native/src/fs.c). */
export const ST = {
  MASK: 0, BLKSIZE: 1, ATTRIBUTES: 2, NLINK: 3, UID: 4, GID: 5, MODE: 6, INO: 7, SIZE: 8,
  BLOCKS: 9, ATTRIBUTES_MASK: 10,
  ATIME_SEC: 11, ATIME_NSEC: 12, BTIME_SEC: 13, BTIME_NSEC: 14, CTIME_SEC: 15, CTIME_NSEC: 16,
  MTIME_SEC: 17, MTIME_NSEC: 18, RDEV_MAJOR: 19, RDEV_MINOR: 20, DEV_MAJOR: 21, DEV_MINOR: 22,
  MNT_ID: 23, DIO_MEM_ALIGN: 24, DIO_OFFSET_ALIGN: 25,
} as const;
export const STAT_LEN = 26;

/** Index of each field in the BigUint64Array filled by fstatfs(). */
export const STATFS = {
  TYPE: 0, BSIZE: 1, BLOCKS: 2, BFREE: 3, BAVAIL: 4, FILES: 5, FFREE: 6, FSID0: 7, FSID1: 8,
  NAMELEN: 9, FRSIZE: 10, FLAGS: 11,
} as const;
export const STATFS_LEN = 12;

export interface Timespec {
  sec: bigint;
  nsec: number;
}

/** A device number split in two (st_rdev, st_dev). */
export interface DeviceNumber {
  major: number;
  minor: number;
}

/**
 * The kernel's 32-bit dev_t encoding (new_encode_dev): FUSE's rdev on the wire, and what libfuse2
 * passes as a dev_t for numbers below 2^12:2^20.
 */
export function encodeDev32(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** The kernel's new_decode_dev, the inverse of encodeDev32. */
export function decodeDev32(dev: number): DeviceNumber {
  return { major: (dev & 0xfff00) >>> 8, minor: ((dev & 0xff) | ((dev >>> 12) & 0xfff00)) >>> 0 };
}

/** A decoded statx record. 64-bit values stay bigint (lossless). */
export interface Stat {
  mask: number;
  blksize: number;
  attributes: bigint;
  nlink: number;
  uid: number;
  gid: number;
  mode: number;
  ino: bigint;
  size: bigint;
  blocks: bigint;
  atime: Timespec;
  btime: Timespec | null;
  ctime: Timespec;
  mtime: Timespec;
  rdevMajor: number;
  rdevMinor: number;
  devMajor: number;
  devMinor: number;
  mntId: bigint;
}

export function decodeStat(a: BigUint64Array): Stat {
  const mask = Number(a[ST.MASK]!);
  return {
    mask,
    blksize: Number(a[ST.BLKSIZE]!),
    attributes: a[ST.ATTRIBUTES]!,
    nlink: Number(a[ST.NLINK]!),
    uid: Number(a[ST.UID]!),
    gid: Number(a[ST.GID]!),
    mode: Number(a[ST.MODE]!),
    ino: a[ST.INO]!,
    size: a[ST.SIZE]!,
    blocks: a[ST.BLOCKS]!,
    atime: { sec: BigInt.asIntN(64, a[ST.ATIME_SEC]!), nsec: Number(a[ST.ATIME_NSEC]!) },
    btime: mask & STATX_BTIME ? { sec: BigInt.asIntN(64, a[ST.BTIME_SEC]!), nsec: Number(a[ST.BTIME_NSEC]!) } : null,
    ctime: { sec: BigInt.asIntN(64, a[ST.CTIME_SEC]!), nsec: Number(a[ST.CTIME_NSEC]!) },
    mtime: { sec: BigInt.asIntN(64, a[ST.MTIME_SEC]!), nsec: Number(a[ST.MTIME_NSEC]!) },
    rdevMajor: Number(a[ST.RDEV_MAJOR]!),
    rdevMinor: Number(a[ST.RDEV_MINOR]!),
    devMajor: Number(a[ST.DEV_MAJOR]!),
    devMinor: Number(a[ST.DEV_MINOR]!),
    mntId: a[ST.MNT_ID]!,
  };
}

/** A decoded fstatfs record (struct statfs). Block and file counts stay bigint. */
export interface StatFs {
  type: number;
  bsize: number;
  blocks: bigint;
  bfree: bigint;
  bavail: bigint;
  files: bigint;
  ffree: bigint;
  fsid: [number, number];
  namelen: number;
  frsize: number;
  flags: number;
}

export function decodeStatfs(a: BigUint64Array): StatFs {
  return {
    type: Number(a[STATFS.TYPE]!),
    bsize: Number(a[STATFS.BSIZE]!),
    blocks: a[STATFS.BLOCKS]!,
    bfree: a[STATFS.BFREE]!,
    bavail: a[STATFS.BAVAIL]!,
    files: a[STATFS.FILES]!,
    ffree: a[STATFS.FFREE]!,
    fsid: [Number(a[STATFS.FSID0]!), Number(a[STATFS.FSID1]!)],
    namelen: Number(a[STATFS.NAMELEN]!),
    frsize: Number(a[STATFS.FRSIZE]!),
    flags: Number(a[STATFS.FLAGS]!),
  };
}
