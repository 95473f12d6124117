/**
 * Attribute conversions between the lossless domain types (src/fs/types.ts) and what fuse-native
 * 2.2.6 can carry. Its encoding (index.js getStatArray/getStatfsArray, fuse-native.c
 * populate_stat/populate_statvfs) is a Uint32Array, so exactly this survives:
 * - stat: mode, uid, gid, nlink, ino, dev, rdev, blksize are 32-bit; size and blocks are two
 *   32-bit halves of a JS number (exact below 2^53); atime/mtime/ctime are milliseconds since the
 *   epoch as an unsigned 64-bit value (sub-millisecond digits are lost; times before 1970 cannot be
 *   expressed and are clamped to 0). No birth time.
 * - statfs: every field is 32-bit. Block counts beyond 2^32 are expressed by scaling f_frsize up
 *   by a power of two (df reports the same bytes, in coarser units); file counts saturate.
 */
import type FuseNative from 'fuse-native';
type FuseStat = FuseNative.FuseStat;
type FuseStatfs = FuseNative.FuseStatfs;
import type { Attr, StatfsOut, Timespec } from '../../fs/types.js';
import { encodeDev32 } from '../../sys/stat.js';

const U32 = 0x1_0000_0000;
const U32_MAX = 0xffff_ffff;

/** Milliseconds since the epoch, as fuse-native carries times (never negative). */
export function timespecToMs(t: Timespec): number {
  const ms = Number(t.sec) * 1000 + Math.floor(t.nsec / 1_000_000);
  return ms > 0 ? ms : 0;
}

export function attrToFuseStat(a: Attr): FuseStat {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    size: Number(a.size),
    dev: 0,
    nlink: a.nlink,
    // libfuse2 replaces it with its own node number (we do not mount with use_ino: 32 bits of a
    // 64-bit inode number could collide and make tar/cp -a see false hard links)
    ino: Number(a.ino & 0xffff_ffffn),
    rdev: encodeDev32(a.rdevMajor, a.rdevMinor),
    blksize: a.blksize,
    blocks: Number(a.blocks),
    atime: timespecToMs(a.atime),
    mtime: timespecToMs(a.mtime),
    ctime: timespecToMs(a.ctime),
  };
}

function setDouble(arr: Uint32Array, idx: number, num: number): void {
  const lo = num % U32;
  arr[idx] = lo;
  arr[idx + 1] = (num - lo) / U32;
}

/**
 * The Uint32Array fuse-native's C side reads (populate_stat), built exactly as its index.js
 * getStatArray does (which it does not export): for the ops mount.ts dispatches itself.
 */
export function statArray(st: FuseStat): Uint32Array {
  const ints = new Uint32Array(18);
  ints[0] = st.mode;
  ints[1] = st.uid;
  ints[2] = st.gid;
  setDouble(ints, 3, st.size);
  ints[5] = st.dev;
  ints[6] = st.nlink || 1;
  ints[7] = st.ino;
  ints[8] = st.rdev;
  ints[9] = st.blksize;
  setDouble(ints, 10, st.blocks);
  setDouble(ints, 12, typeof st.atime === 'number' ? st.atime : st.atime.getTime());
  setDouble(ints, 14, typeof st.mtime === 'number' ? st.mtime : st.mtime.getTime());
  setDouble(ints, 16, typeof st.ctime === 'number' ? st.ctime : st.ctime.getTime());
  return ints;
}

export function statfsToFuse(s: StatfsOut): FuseStatfs {
  let frsize = s.frsize || s.bsize;
  let blocks = s.blocks;
  let bfree = s.bfree;
  let bavail = s.bavail;
  // fit f_blocks in 32 bits by making the unit larger (bytes = blocks * frsize stay the same, rounded down)
  while (blocks > BigInt(U32_MAX) && frsize < 0x4000_0000) {
    frsize *= 2;
    blocks >>= 1n;
    bfree >>= 1n;
    bavail >>= 1n;
  }
  const sat = (v: bigint): number => (v > BigInt(U32_MAX) ? U32_MAX : Number(v));
  return {
    bsize: s.bsize,
    frsize,
    blocks: sat(blocks),
    bfree: sat(bfree),
    bavail: sat(bavail),
    files: sat(s.files),
    ffree: sat(s.ffree),
    favail: sat(s.ffree),
    fsid: 0,
    flag: 0,
    namemax: s.namelen,
  };
}
