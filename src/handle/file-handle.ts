/** A kernel file handle (struct file_handle) plus the mount it came from. */
export interface FileHandle {
  type: number;
  bytes: Buffer;
  mountId: bigint;
}

/** In-memory index key: same file on the same mount <=> same key (hard links included). */
export function handleKey(h: FileHandle): string {
  return `${h.mountId}:${h.type}:${h.bytes.toString('hex')}`;
}

/** Byte-for-byte identity of two handles (type and bytes; the mount is checked by the caller). */
export function sameHandle(a: FileHandle, b: FileHandle): boolean {
  return a.type === b.type && a.bytes.length === b.bytes.length && a.bytes.equals(b.bytes);
}
