/**
 * Which requests a worker took off each queue and has not answered yet, kept in memory a supervisor
 * shares with it (a memfd), so that a successor knows after a crash: the next avail index to take,
 * the chains taken and not answered (each gets an error reply), and whether the last answer reached
 * the used ring. The worker writes it with plain stores before and after each step; a SIGKILL can
 * land between any two of them, and every such point is recoverable:
 *
 *   take:   pop -> mark[head] = 1 -> published lastAvail   (dispatch only after both)
 *   answer: pending = head, usedBefore = used idx -> push to the used ring -> mark[head] = 0 -> pending = none
 *
 * A crash after the pop and before the publication: the successor takes the chain again (it was
 * never dispatched). A crash with `pending` set: the used ring's idx tells whether the push
 * happened (then only the mark is stale) or not (then the chain is still in flight).
 * The same layout serves an unsupervised server as scratch memory nobody reads.
 */
import { MAX_QUEUE_SIZE } from './vring.js';

/** per queue: u16 lastAvail, u16 valid, u32 pending head + 1 (0: none), u16 used idx before the pending push, pad, then a byte per head */
const QUEUE_HEADER = 16;
const QUEUE_BYTES = QUEUE_HEADER + MAX_QUEUE_SIZE;
export const MAX_INFLIGHT_QUEUES = 8;
export const INFLIGHT_BYTES = QUEUE_BYTES * MAX_INFLIGHT_QUEUES;

/** What a successor finds for one queue. */
export interface QueueRecovery {
  lastAvail: number;
  /** heads taken and not answered, in no particular order */
  heads: number[];
}

export class InflightTable {
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    if (bytes.byteLength < INFLIGHT_BYTES) throw new RangeError('inflight memory is too small');
    this.view = new DataView(bytes.buffer, bytes.byteOffset, INFLIGHT_BYTES);
  }

  private base(q: number): number {
    return q * QUEUE_BYTES;
  }

  /** A queue starts from `lastAvail` with nothing in flight (a fresh queue, or one the VMM set up again). */
  reset(q: number, lastAvail: number): void {
    if (q >= MAX_INFLIGHT_QUEUES) return;
    const b = this.base(q);
    this.bytes.fill(0, b, b + QUEUE_BYTES);
    this.view.setUint16(b, lastAvail, true);
    this.view.setUint16(b + 2, 1, true);
  }

  taken(q: number, head: number, lastAvail: number): void {
    if (q >= MAX_INFLIGHT_QUEUES) return;
    const b = this.base(q);
    this.bytes[b + QUEUE_HEADER + head] = 1;
    this.view.setUint16(b, lastAvail, true);
  }

  answering(q: number, head: number, usedIdx: number): void {
    if (q >= MAX_INFLIGHT_QUEUES) return;
    const b = this.base(q);
    this.view.setUint16(b + 8, usedIdx, true);
    this.view.setUint32(b + 4, head + 1, true);
  }

  answered(q: number, head: number): void {
    if (q >= MAX_INFLIGHT_QUEUES) return;
    const b = this.base(q);
    this.bytes[b + QUEUE_HEADER + head] = 0;
    this.view.setUint32(b + 4, 0, true);
  }

  /**
   * What a predecessor left for queue `q` of size `num`, given the used ring's idx now; null when it
   * never ran the queue. A pending push that reached the ring is settled here.
   */
  recover(q: number, num: number, usedIdxNow: number): QueueRecovery | null {
    if (q >= MAX_INFLIGHT_QUEUES) return null;
    const b = this.base(q);
    if (this.view.getUint16(b + 2, true) !== 1) return null;
    const pending = this.view.getUint32(b + 4, true);
    if (pending !== 0) {
      const head = pending - 1;
      // the push wrote the used element, then the idx: a moved idx means it reached the guest
      if (head < MAX_QUEUE_SIZE && usedIdxNow !== this.view.getUint16(b + 8, true)) this.bytes[b + QUEUE_HEADER + head] = 0;
      this.view.setUint32(b + 4, 0, true);
    }
    const heads: number[] = [];
    for (let h = 0; h < num && h < MAX_QUEUE_SIZE; h++) if (this.bytes[b + QUEUE_HEADER + h] === 1) heads.push(h);
    return { lastAvail: this.view.getUint16(b, true), heads };
  }
}
