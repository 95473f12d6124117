/**
 * Writes notifications (src/fuse/notify.ts) to /dev/fuse off the event loop, one at a time.
 *
 * The kernel handles a notification inside the write(2), under the locks of the inode or directory
 * it names; a client request may hold those locks while it waits for a reply that only the event
 * loop can give. A write from the event loop could therefore wait forever (libfuse warns against
 * notifying from a request handler; virtiofsd and go-fuse notify from another thread). Each write
 * goes to the libuv pool instead (pwriteAsync), and only one is in flight at a time, so a
 * notification stuck behind a busy inode holds one pool thread, never the pool. The queue behind
 * it is bounded; the core has already coalesced and rate-bounded what arrives here.
 */
import type { Logger } from 'pino';
import { LogOnce } from '../../log.js';
import { sys } from '../../sys/syscalls.js';
import { FUSE_NOTIFY_RESEND, OutHeader } from '../../fuse/abi.js';

/** Notifications waiting behind the one in flight, at most. */
const MAX_QUEUED = 1024;

export interface NotifyCounters {
  /** notifications the kernel took */
  notifyWritten: number;
  /** the kernel had nothing cached for it (ENOENT): nothing to drop */
  notifyNotCached: number;
  /** refused otherwise, or dropped because the queue was full */
  notifyFailed: number;
}

export class NotifyWriter {
  readonly counters: NotifyCounters = { notifyWritten: 0, notifyNotCached: 0, notifyFailed: 0 };
  private readonly queue: Buffer[] = [];
  private inflight: Promise<void> | null = null;
  private closed = false;
  private readonly once: LogOnce;

  constructor(private readonly fd: number, log: Logger) {
    this.once = new LogOnce(log);
  }

  send(msg: Buffer): void {
    if (this.closed) return;
    if (this.queue.length >= MAX_QUEUED) {
      this.counters.notifyFailed++;
      return;
    }
    this.queue.push(msg);
    this.start();
  }

  private start(): void {
    if (this.inflight || this.closed || this.queue.length === 0) return;
    this.inflight = this.pump().then(() => {
      this.inflight = null;
      this.start();
    });
  }

  /**
   * Stop writing; resolves true once no write is in flight (the fd may then be closed), false if
   * one is still stuck after `waitMs` (the fd must then stay open: a pool thread still writes to it).
   */
  async close(waitMs = 2000): Promise<boolean> {
    this.closed = true;
    this.queue.length = 0;
    const pending = this.inflight;
    if (!pending) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), waitMs)));
    const done = await Promise.race([pending.then(() => true), timeout]);
    clearTimeout(timer);
    return done;
  }

  private async pump(): Promise<void> {
    for (let msg = this.queue.shift(); msg && !this.closed; msg = this.queue.shift()) {
      try {
        await sys.pwriteAsync(this.fd, msg, 0, msg.length, -1);
        this.counters.notifyWritten++;
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'EIO';
        if (code === 'ENOENT') {
          this.counters.notifyNotCached++;
          continue;
        }
        this.counters.notifyFailed++;
        // ENODEV: the connection ended; the session sees it too
        if (code === 'ENODEV') this.closed = true;
        else this.once.warn(`notify-${code}`, { code }, `writing a cache invalidation to /dev/fuse failed (${code})`);
      }
    }
  }
}

/**
 * Write FUSE_NOTIFY_RESEND: the kernel queues again every request read on this connection and not
 * answered. Throws (EINVAL) on a kernel without it (before 6.9); nothing to resend is no error.
 */
export function notifyResend(fd: number): void {
  const b = Buffer.alloc(OutHeader.SIZE);
  b.writeUInt32LE(OutHeader.SIZE, OutHeader.len);
  b.writeInt32LE(FUSE_NOTIFY_RESEND, OutHeader.error);
  sys.pwrite(fd, b, 0, b.length, -1);
}
