/** A kernel file handle (struct file_handle) plus the mount it came from. */
export interface FileHandle {
  type: number;
  bytes: Buffer;
  mountId: bigint;
}

const keyScratch = Buffer.alloc(5 + 128);

/**
 * The in-memory key of a handle within one mount (the export table's identity, whose records are
 * all of the share's mount): same file <=> same key, hard links included. A flat one-byte string,
 * 'h', the type (4 bytes) and the handle's bytes read as latin1: made by one native call and
 * hashed without flattening (a hex template string cost about 0.6 us per key and lookup; this
 * one 0.25).
 */
export function handleKey(type: number, bytes: Uint8Array): string {
  const s = keyScratch;
  const n = bytes.length;
  s[0] = 0x68;
  s.writeInt32LE(type | 0, 1);
  for (let i = 0; i < n; i++) s[5 + i] = bytes[i]!;
  return s.toString('latin1', 0, 5 + n);
}

/** Byte-for-byte identity of two handles (type and bytes; the mount is checked by the caller). */
export function sameHandle(a: FileHandle, b: FileHandle): boolean {
  return a.type === b.type && a.bytes.length === b.bytes.length && a.bytes.equals(b.bytes);
}
