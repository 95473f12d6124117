/**
 * Reusable large buffers (a READ reply, a WRITE request: up to max_pages plus a header). A fresh
 * 1 MiB Buffer per request costs page faults on first touch and, as external memory, pushes V8
 * into major collections; sequential I/O spent a quarter of its CPU on that. A slab is handed out
 * by take() and comes back by give() once nothing reads it: a slab given back twice, or a buffer
 * that is not one of ours, is ignored, so a mistake costs an allocation and never shares a slab.
 *
 * A new slab is written through once, so that every page of it is present and writable before the
 * kernel copies a request into it. The kernel copies into pages it finds mapped without waiting;
 * a page it must fault in fails the copy when the reader has a fatal signal pending, and a copy
 * that fails ends the request with EIO (fuse_dev_do_read), where a request not yet copied would
 * stay queued, or be resent, for the reader's successor: without the write-through, a supervised
 * worker killed by SIGKILL while it read a WRITE into a fresh slab would fail that WRITE.
 */
export class SlabPool {
  private readonly free: Buffer[] = [];
  private readonly out = new Set<ArrayBufferLike>();

  constructor(
    readonly size: number,
    /** slabs kept for reuse; more in use at once are allocated and left to the GC */
    private readonly keep = 4,
  ) {}

  take(): Buffer {
    const b = this.free.pop() ?? Buffer.allocUnsafeSlow(this.size).fill(0);
    this.out.add(b.buffer);
    return b;
  }

  /** Give back a slab, or any view of one. */
  give(view: Buffer): void {
    if (!this.out.delete(view.buffer)) return;
    if (this.free.length < this.keep) this.free.push(Buffer.from(view.buffer, 0, this.size));
  }

  /** slabs handed out and not yet given back */
  get inUse(): number {
    return this.out.size;
  }
}
