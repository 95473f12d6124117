/**
 * Sealed inode records a vhost-user worker hands its supervisor through shared memory instead of
 * IPC: the worker appends each record with plain stores (no syscall, no message per new inode),
 * and the supervisor reads the log only when it needs it, after the worker died. A record is
 * written before the length that publishes it, so a worker killed mid-append leaves the log as it
 * was before that record. When the log is full the worker falls back to IPC streaming.
 *
 * Layout: u32 magic, u32 reserved, u32 end (bytes used, header included), u32 reserved; then
 * entries of u32 length + the record's bytes.
 */
export const RECORD_LOG_BYTES = 64 << 20;
const MAGIC = 0x4846_524c; // 'HFRL'
const HEADER = 16;
const END = 8;

export class RecordLog {
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (this.view.getUint32(0, true) !== MAGIC) this.reset();
  }

  reset(): void {
    this.view.setUint32(0, MAGIC, true);
    this.view.setUint32(END, HEADER, true);
  }

  /** Append one record; false when it does not fit (the caller streams it another way). */
  append(rec: Uint8Array): boolean {
    const end = this.view.getUint32(END, true);
    if (end + 4 + rec.length > this.bytes.byteLength) return false;
    this.view.setUint32(end, rec.length, true);
    this.bytes.set(rec, end + 4);
    this.view.setUint32(END, end + 4 + rec.length, true);
    return true;
  }

  /** Every record appended, oldest first (copies); a torn or lying length ends the list. */
  records(): Buffer[] {
    const out: Buffer[] = [];
    const end = Math.min(this.view.getUint32(END, true), this.bytes.byteLength);
    for (let at = HEADER; at + 4 <= end;) {
      const n = this.view.getUint32(at, true);
      if (at + 4 + n > end) break;
      out.push(Buffer.from(this.bytes.subarray(at + 4, at + 4 + n)));
      at += 4 + n;
    }
    return out;
  }
}
