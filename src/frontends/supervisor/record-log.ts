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
import { sys } from '../../sys/syscalls.js';

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

/**
 * What a supervisor keeps of its workers' records: the shared log (its memfd goes to each worker),
 * what a worker streamed over IPC once the log was full, and the full state of the last upgrade.
 */
export class SupervisedRecords {
  /** the memfd a worker maps (record-log fd) */
  readonly fd: number;
  private readonly mapping: ArrayBuffer;
  private readonly log: RecordLog;
  private readonly streamed: Buffer[] = [];
  private upgradeState: Buffer | null = null;

  constructor() {
    // sparse: only the pages records fill take memory
    this.fd = sys.memfdCreate('handlefs-records', RECORD_LOG_BYTES);
    this.mapping = sys.mapShared(this.fd, RECORD_LOG_BYTES, 0);
    this.log = new RecordLog(new Uint8Array(this.mapping));
  }

  /** Records a worker sent over IPC (its log was full). */
  add(recs: readonly Uint8Array[]): void {
    for (const r of recs) this.streamed.push(Buffer.from(r.buffer, r.byteOffset, r.byteLength));
  }

  /** A crash successor's records: the last upgrade's state, then what was logged, then what was streamed. */
  forSuccessor(): Buffer[] {
    return [...(this.upgradeState ? [this.upgradeState] : []), ...this.log.records(), ...this.streamed];
  }

  /** An upgrade handed over `state`, which holds every record so far: the base from now on, and the log starts again. */
  upgraded(state: Buffer): void {
    this.upgradeState = state;
    this.log.reset();
    this.streamed.length = 0;
  }

  close(): void {
    sys.unmapShared(this.mapping);
    try {
      sys.close(this.fd);
    } catch {
      /* closed */
    }
  }
}
