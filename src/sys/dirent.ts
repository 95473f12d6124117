/** One linux_dirent64 record, name kept as bytes (virtiofsd read_dir.rs). */
export interface Dirent {
  ino: bigint;
  /** d_off: the cookie to lseek() to in order to resume after this entry */
  off: bigint;
  type: number;
  name: Buffer;
}

/**
 * Parse the first `n` bytes that getdents64 wrote into `buf`:
 * struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }.
 * The returned names are copies (the buffer is reused by the caller).
 */
export function parseDirents(buf: Buffer, n: number): Dirent[] {
  const out: Dirent[] = [];
  let p = 0;
  while (p + 19 <= n) {
    const reclen = buf.readUInt16LE(p + 16);
    if (reclen < 20 || p + reclen > n) break; // malformed: stop rather than read past the record
    const nameStart = p + 19;
    let nameEnd = buf.indexOf(0, nameStart);
    if (nameEnd < 0 || nameEnd > p + reclen) nameEnd = p + reclen;
    out.push({
      ino: buf.readBigUInt64LE(p),
      off: buf.readBigInt64LE(p + 8),
      type: buf[p + 18]!,
      name: Buffer.from(buf.subarray(nameStart, nameEnd)),
    });
    p += reclen;
  }
  return out;
}
