import type { Logger } from 'pino';
import { sys } from '../sys/syscalls.js';

// fanotify(7)
const FAN_CLOEXEC = 0x1;
const FAN_NONBLOCK = 0x2;
const FAN_CLASS_NOTIF = 0x0;
const FAN_REPORT_DIR_FID = 0x400;
const FAN_MARK_ADD = 0x1;
const FAN_MARK_FILESYSTEM = 0x100;
const FAN_MOVED_FROM = 0x40n;
const FAN_ONDIR = 0x40000000n;
const O_RDONLY = 0;
const AT_FDCWD = -100;
const EVENT_BUF = 8192;

/**
 * Tells the server whether anything was renamed on the shared directory's filesystem since a
 * given moment: an epoch that grows on every rename (files and directories, by the host or by the
 * client, anywhere on that filesystem) and on a queue overflow.
 *
 * Why: an fd follows its file, so a directory the host moves outside the share stays reachable
 * through the fd the server holds. Proving it is still beneath the root costs a readlink of
 * /proc/self/fd/N per name operation; with this watch the proof is kept until the next rename, and
 * checking costs one non-blocking read of the fanotify queue. The queue is read before every use of
 * a kept proof, so a move that finished before the request was served is always seen; a rename
 * racing the request itself is the same window the readlink check has.
 *
 * Needs CAP_SYS_ADMIN (a filesystem-wide mark) and a filesystem with file handles; without them
 * `enabled` is false and every check does the readlink.
 */
export class MoveWatch {
  readonly enabled: boolean;
  private readonly fd: number;
  private readonly buf = Buffer.allocUnsafeSlow(EVENT_BUF);
  private current = 0;
  /** renames (or overflows) seen; for the stats */
  events = 0;

  constructor(rootPath: Buffer, log: Logger) {
    let fd = -1;
    try {
      fd = sys.fanotifyInit(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DIR_FID, O_RDONLY);
      sys.fanotifyMark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_MOVED_FROM | FAN_ONDIR, AT_FDCWD, rootPath);
    } catch (e) {
      if (fd >= 0) sys.close(fd);
      fd = -1;
      log.debug({ code: (e as { code?: string }).code }, 'no fanotify rename watch: confinement proofs are redone per request');
    }
    this.fd = fd;
    this.enabled = fd >= 0;
  }

  /** The current epoch, after taking in every rename queued so far. */
  epoch(): number {
    if (!this.enabled) return -1;
    for (;;) {
      let n: number;
      try {
        n = sys.readNonblock(this.fd, this.buf, 0, EVENT_BUF, -1);
      } catch {
        // the queue cannot be read: assume a move, so that no kept proof is trusted
        this.current++;
        return this.current;
      }
      if (n <= 0) {
        if (n === -4 /* EINTR */) continue;
        return this.current;
      }
      // the events themselves do not matter, only that something moved
      this.current++;
      this.events++;
    }
  }

  /**
   * The epoch as of the last read, without reading (-1 when disabled). A proof stamped with it is
   * conservative: a rename after that read shows up as a later epoch at the next read.
   */
  get last(): number {
    return this.enabled ? this.current : -1;
  }

  close(): void {
    if (this.enabled) sys.close(this.fd);
  }
}
